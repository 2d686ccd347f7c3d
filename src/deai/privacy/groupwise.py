"""Group-wise secure aggregation: secure sums inside small random groups, then a robust
rule over the group means.

Secure aggregation hides every individual update, which also hides a poisoned one from
robust aggregation. The compromise (in the spirit of Burkhalter et al., "RoFL", and of
So, Güler, Avestimehr, "Byzantine-resilient secure federated learning", 2021): draw
random groups of size ``s`` from a public seed, run secure aggregation within each group,
and apply a robust aggregator to the ``n / s`` group means.

Trade-off (measured in ``benchmarks/privacy.py``):

* privacy: the validator learns each group's sum, so an update hides among ``s`` (not
  ``n``) others, and among ``s - c`` honest ones if ``c`` group members collude;
* robustness: ``f`` attackers can spoil at most ``f`` groups, but a robust rule that
  tolerates a fraction ``beta`` of bad rows now needs ``f < beta * n / s``; bigger groups
  mean more privacy and less robustness. ``s = 1`` is plain robust aggregation without
  secure aggregation; ``s = n`` is plain secure aggregation without robustness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deai.aggregation.base import Aggregate, Aggregator, RoundContext
from deai.errors import ConfigError
from deai.privacy.secagg import SecAggConfig, run_secagg_inprocess


@dataclass(frozen=True)
class GroupwiseConfig:
    group_size: int  # s: members per group (the last groups may hold one more)
    seed: int  # public seed of the grouping (e.g. from the round's chain randomness)
    secure: bool = True  # run real secure aggregation per group (False: plain group sums)
    clip: float = 1.0  # per-coordinate range of the fixed-point encoding in secagg
    value_bits: int = 16  # bits per coordinate in secagg
    threshold_fraction: float = 2 / 3  # Shamir threshold as a fraction of the group


@dataclass(frozen=True)
class GroupwiseResult:
    aggregate: Aggregate  # the robust rule's output over group means
    groups: tuple[tuple[int, ...], ...]  # member indices of each group
    group_means: Tensor  # [g, d] what the validator saw


def random_groups(n: int, group_size: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Partition ``0..n-1`` into ``max(1, n // group_size)`` random groups of near-equal size."""
    if not 1 <= group_size <= n:
        raise ConfigError(f"group_size must be in [1, {n}], got {group_size}")
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, max(1, n // group_size))
    return tuple(tuple(sorted(int(i) for i in p)) for p in parts)


def groupwise_aggregate(
    updates: Tensor, aggregator: Aggregator, config: GroupwiseConfig
) -> GroupwiseResult:
    """Secure sum per random group, then ``aggregator`` over the group means (weighted by
    group size). Group rows excluded by the rule are reported as group indices."""
    if updates.ndim != 2:
        raise ConfigError(f"updates must be [n, d], got {tuple(updates.shape)}")
    n, d = updates.shape
    groups = random_groups(n, config.group_size, config.seed)
    sums = []
    for gi, members in enumerate(groups):
        idx = list(members)
        if config.secure and len(idx) >= 2:
            t = max(2, len(idx) // 2 + 1, math.ceil(config.threshold_fraction * len(idx)))
            sc = SecAggConfig(
                n_clients=len(idx),
                threshold=t,
                dim=d,
                clip=config.clip,
                value_bits=config.value_bits,
                session=f"deai/groupwise/{config.seed}/{gi}".encode(),
            )
            sums.append(
                run_secagg_inprocess(sc, updates[idx], seed=config.seed * 1000 + gi).output.vector
            )
        else:
            sums.append(updates[idx].sum(0))
    sizes = torch.tensor([float(len(g)) for g in groups])
    means = torch.stack(sums).to(updates.dtype) / sizes[:, None]
    agg = aggregator(means, sizes, RoundContext())
    return GroupwiseResult(agg, groups, means)
