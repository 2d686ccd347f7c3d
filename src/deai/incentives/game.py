"""The within-round contribution game.

A validator values the updates of one round by the models it can rebuild from them, with no
retraining (the "reconstruction" idea of GTG-Shapley, Liu et al. 2022, ACM TIST 13(4)):

    utility(S) = evaluate(global + server_lr * sum_{i in S} (w_i / W) updates[i])
    utility(∅) = evaluate(global)

with ``W`` the weight of *all* the players (``normalize = "round"``, the default for FedAvg's
weighted mean): each member moves the model by its own term of the round's applied mean, so
a coalition of a few players makes a small step. Renormalizing by the coalition's own
weight (``normalize = "coalition"``, ``aggregate(updates[S], weights[S])``) makes a
one-player coalition worth a full step in that player's direction whatever its weight: one
dataset split across k identities then owns k such players, and splitting paid 1.23-1.31x
(issue 16's ``sybil_gain_max``, exact Shapley, 3 seeds); under ``round`` the same splits pay
0.94-1.03x of the whole provider (mean 1.00 in halves, 0.96 in thirds). Any other
``aggregate`` (a robust rule) is applied to the coalition's rows alone, as a validator
would apply it to the rows it received.

``evaluate`` is the requester's utility on its validation data (validation accuracy, or the
negative loss, which is smoother and so gives better-behaved values). Every evaluator in this
package (exact Shapley, Monte-Carlo Shapley, GTG-Shapley, leave-one-out, the proxies) reads the
game through :class:`CoalitionUtility`, which memoises coalition values and counts the distinct
evaluations, so that the cost of an estimator is measured in the same unit everywhere: calls to
``evaluate`` (one forward pass over the validation set each).

Assumptions. The updates have been validated already (shape, finite values, norm); the game
checks shapes and finiteness again because a wrong stack would silently corrupt every payout.
``evaluate`` must be deterministic (fixed threads, deterministic kernels) for validators to
agree bit for bit; the game adds no randomness of its own. If the aggregator cannot form an
aggregate for some coalition (a robust rule that needs more rows than the coalition has, or
weights that sum to zero), the coalition leaves the model unchanged: its utility is utility(∅).
That is what a validator would publish in that case, and it keeps the game total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from deai.aggregation.base import Aggregate, weighted_mean
from deai.errors import AggregationError, ConfigError

Evaluate = Callable[[Tensor], float]
"""``evaluate(params[d]) -> float``: the requester's utility of a flat parameter vector."""

AggregateFn = Callable[[Tensor, Tensor], "Tensor | Aggregate"]
"""``aggregate(updates[m, d], weights[m])``: returns the aggregated update ``Tensor[d]`` or an
:class:`~deai.aggregation.base.Aggregate` (its ``vector`` is used)."""


def mean_update(updates: Tensor, weights: Tensor) -> Tensor:
    """FedAvg's weighted mean as a plain ``(updates, weights) -> Tensor[d]`` callable."""
    return weighted_mean(updates, weights).vector


class CoalitionUtility:
    """Memoised ``utility(S)`` over the n submitted updates of one round.

    Coalitions are addressed by a bitmask (bit i set: update i is in) or by an iterable of
    indices. ``evaluations`` counts distinct calls of ``evaluate`` (memo hits are free), which is
    the cost unit reported by the benchmark; ``queries`` counts every lookup.
    """

    def __init__(
        self,
        global_params: Tensor,
        updates: Tensor,
        weights: Tensor,
        evaluate: Evaluate,
        aggregate: AggregateFn = mean_update,
        *,
        server_lr: float = 1.0,
        normalize: str = "round",
    ) -> None:
        if global_params.ndim != 1:
            raise ConfigError(f"global_params must be 1-D, got shape {tuple(global_params.shape)}")
        d = global_params.shape[0]
        if updates.ndim != 2 or updates.shape[0] == 0 or updates.shape[1] != d:
            raise ConfigError(f"updates must be [n, {d}] with n >= 1, got {tuple(updates.shape)}")
        if weights.shape != (updates.shape[0],):
            raise ConfigError(f"weights must be [{updates.shape[0]}], got {tuple(weights.shape)}")
        if not bool(torch.isfinite(updates).all()) or not bool(torch.isfinite(global_params).all()):
            raise ConfigError("global_params and updates must be finite")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ConfigError("weights must be finite and non-negative")
        if not server_lr > 0.0:
            raise ConfigError(f"server_lr must be > 0, got {server_lr}")
        if normalize not in ("round", "coalition"):
            raise ConfigError(f"normalize must be 'round' or 'coalition', got {normalize!r}")
        self.global_params = global_params
        self.updates = updates
        self.weights = weights
        self.server_lr = server_lr
        self.normalize = normalize  # mean_update: divide by all players' weight or S's
        self._round_weight = float(weights.sum())  # W of normalize="round"
        self._evaluate = evaluate
        self._aggregate = aggregate
        self._memo: dict[int, float] = {}
        self.evaluations = 0  # distinct calls of evaluate
        self.queries = 0  # every lookup, memo hits included
        self.failed_aggregations = 0  # coalitions whose aggregate could not be formed

    @property
    def n(self) -> int:
        """Number of players (submitted updates)."""
        return int(self.updates.shape[0])

    @property
    def full_mask(self) -> int:
        """Bitmask of the grand coalition."""
        return (1 << self.n) - 1

    def __call__(self, coalition: Iterable[int]) -> float:
        """Utility of the coalition given as player indices."""
        mask = 0
        for i in coalition:
            if not 0 <= i < self.n:
                raise ConfigError(f"player index {i} out of range [0, {self.n})")
            mask |= 1 << i
        return self.value(mask)

    def value(self, mask: int) -> float:
        """Utility of the coalition given as a bitmask."""
        if not 0 <= mask <= self.full_mask:
            raise ConfigError(f"coalition mask {mask} out of range for n={self.n}")
        self.queries += 1
        cached = self._memo.get(mask)
        if cached is not None:
            return cached
        utility = float(self._evaluate(self.params(mask)))
        self.evaluations += 1
        self._memo[mask] = utility
        return utility

    def params(self, mask: int) -> Tensor:
        """The model a coalition rebuilds: global + server_lr * aggregate(updates[S])."""
        if mask == 0:
            return self.global_params
        if self._aggregate is mean_update:  # the weighted mean over the coalition, without
            # re-checking the (validated) stack each time: zero weight off the coalition
            member = torch.tensor([mask >> i & 1 for i in range(self.n)], dtype=self.weights.dtype)
            w = self.weights * member
            if float(w.sum()) <= 0.0:
                self.failed_aggregations += 1
                return self.global_params
            total = self._round_weight if self.normalize == "round" else float(w.sum())
            vector = (w / total).to(self.updates.dtype) @ self.updates
            return self.global_params + self.server_lr * vector.to(self.global_params.dtype)
        index = torch.tensor([i for i in range(self.n) if mask >> i & 1], dtype=torch.long)
        try:
            out = self._aggregate(self.updates[index], self.weights[index])
        except AggregationError:
            self.failed_aggregations += 1
            return self.global_params
        vector = out.vector if isinstance(out, Aggregate) else out
        return self.global_params + self.server_lr * vector.to(self.global_params.dtype)

    def empty(self) -> float:
        """utility(∅): the unchanged global model."""
        return self.value(0)

    def grand(self) -> float:
        """utility(N): all updates aggregated."""
        return self.value(self.full_mask)

    def aggregate_all(self) -> Tensor:
        """The aggregated update of the grand coalition (no utility evaluation)."""
        return (self.params(self.full_mask) - self.global_params) / self.server_lr
