"""The aggregator contract.

An aggregator is a pure function over a stack of already validated updates:

    aggregate(updates, weights, ctx) -> Aggregate

``weights`` are the (capped) example counts or any non-negative importance; robust rules
may ignore them. The result carries the aggregated vector and the indices of the rows the
rule excluded (or gave zero weight), so reports can score exclusions against the known
attacker set. Each rule lives in its own module, cites its paper and states how many
attackers it tolerates. Stateful rules (FoolsGold keeps history) are small classes whose
``__call__`` has the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from deai.errors import AggregationError


@dataclass(frozen=True)
class Aggregate:
    vector: Tensor  # [d] the aggregated update
    excluded: tuple[int, ...] = ()  # row indices that did not contribute
    scores: dict[str, list[float]] = field(default_factory=dict)  # optional per-row diagnostics


@dataclass(frozen=True)
class RoundContext:
    """What a stateful or reference-based rule may need beyond the stack itself."""

    senders: tuple[str, ...] = ()  # sender id of each row (FoolsGold keeps history per sender)
    round: int = 0
    reference: Tensor | None = None  # [d] an update the validator trusts (FLTrust's root update)


class Aggregator(Protocol):
    """Anything callable as ``(updates[n, d], weights[n], ctx) -> Aggregate``.

    Pure rules ignore ``ctx``; stateful rules are small classes with this ``__call__``.
    """

    def __call__(
        self, updates: Tensor, weights: Tensor, ctx: RoundContext | None = None
    ) -> Aggregate: ...


def _all_finite(x: Tensor) -> bool:
    """``bool(torch.isfinite(x).all())`` in one pass without an ``[n, d]`` mask (ten times
    faster on a round's stack): min and max propagate NaN, so both are finite exactly when
    every value is."""
    lo, hi = torch.aminmax(x)
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def check_stack(updates: Tensor, weights: Tensor) -> None:
    """Shared input contract: a non-empty finite 2-D float stack and matching weights."""
    if updates.ndim != 2 or updates.shape[0] == 0:
        raise AggregationError(
            f"updates must be a non-empty [n, d] stack, got {tuple(updates.shape)}"
        )
    if not torch.is_floating_point(updates):
        raise AggregationError(f"updates must be floating point, got {updates.dtype}")
    if weights.shape != (updates.shape[0],):
        raise AggregationError(
            f"weights must have shape ({updates.shape[0]},), got {tuple(weights.shape)}"
        )
    if updates.numel() and not _all_finite(updates):
        raise AggregationError("updates contain non-finite values")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise AggregationError("weights must be finite and non-negative")


def weighted_mean(updates: Tensor, weights: Tensor, ctx: RoundContext | None = None) -> Aggregate:
    """FedAvg's rule (McMahan et al. 2017): the weight-proportional mean.

    Tolerates no attacker: one arbitrary row moves the result arbitrarily far.
    """
    check_stack(updates, weights)
    total = weights.sum()
    if float(total) <= 0.0:
        raise AggregationError("weights sum to zero")
    w = (weights / total).to(updates.dtype)
    return Aggregate(vector=w @ updates)
