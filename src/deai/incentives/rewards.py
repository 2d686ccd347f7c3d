"""Reward rules: split a round's budget by contribution, and keep reputations.

Payout rule (per round). The job's escrow releases a budget B (integer wei) per round. Each
update i has a contribution c_i from an evaluator (:mod:`deai.incentives.evaluators`). Its
score is s_i = max(c_i, 0), times a stake factor if stake weighting is on, and 0 if the update
was excluded by the aggregator or flagged; optionally scores below ``min_share`` of the total
are dropped (dust free-riders). Player i receives its share B · s_i / Σ s_j rounded to wei by
the largest-remainder method: everyone gets the floor of its quota, and the leftover wei go one
each to the largest fractional parts, ties to the lower index. All of this is done in exact
rational arithmetic (every float converts exactly to a :class:`fractions.Fraction`), so every
validator that computed the same contributions derives the same integer vector, and
``sum(amounts) + refund == B`` always. If no one contributed positively, everything is refunded.

Why positive parts and not raw Shapley values: Shapley values can be negative (harmful
updates); a payout cannot be, and clipping at zero means a harmful update earns nothing rather
than reducing others' pay. Sybil argument: the payout is a share of a fixed budget, so splitting
one dataset into k identities gains only if the evaluator values the parts more than the whole;
for Shapley values of a game with diminishing returns (redundant parts) the parts are valued
at most like the whole, which the benchmark measures (``sybil_gain``). Stake weighting makes
identities costly: each identity must lock its own stake, and under LINEAR weighting an
identity's score scales with the part of the stake it holds, so splitting a stake never
multiplies it.

Reputation. An exponential moving average of each provider's normalised signed contribution
c_i / Σ_j |c_j| (excluded updates count as min(c_i, 0)); the next round's selection weight is
max(reputation, floor), optionally times stake, and participants are drawn from a public seed
by weighted sampling without replacement (Efraimidis & Spirakis 2006), so anyone can recompute
the draw.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from torch import Tensor

from deai.errors import ConfigError


class StakeWeighting(enum.StrEnum):
    NONE = "none"  # scores ignore stake
    LINEAR = "linear"  # score × stake (wei)
    SQRT = "sqrt"  # score × isqrt(stake): dampens large stakers, still exact integer maths


@dataclass(frozen=True)
class RewardConfig:
    stake_weighting: StakeWeighting = StakeWeighting.NONE  # how stake scales a contribution
    min_share: float = 0.0  # scores below this fraction of the positive total earn nothing

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_share < 1.0:
            raise ConfigError(f"min_share must be in [0, 1), got {self.min_share}")


@dataclass(frozen=True)
class Payout:
    amounts: tuple[int, ...]  # wei paid to each player, in input order
    refund: int  # wei of the round budget not paid out (back to the requester)

    @property
    def total(self) -> int:
        return sum(self.amounts)


def _as_floats(values: Sequence[float] | Tensor) -> list[float]:
    out = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    if not all(math.isfinite(v) for v in out):
        raise ConfigError("contributions must be finite")
    return out


def _stake_factor(stake: int, weighting: StakeWeighting) -> int:
    if stake < 0:
        raise ConfigError(f"stakes must be >= 0, got {stake}")
    if weighting is StakeWeighting.LINEAR:
        return stake
    if weighting is StakeWeighting.SQRT:
        return math.isqrt(stake)
    return 1


def payout_scores(
    contributions: Sequence[float] | Tensor,
    *,
    excluded: Collection[int] = (),
    stakes: Sequence[int] | None = None,
    config: RewardConfig = RewardConfig(),
) -> list[Fraction]:
    """The exact non-negative score of every player (see the module docstring)."""
    values = _as_floats(contributions)
    n = len(values)
    if any(not 0 <= i < n for i in excluded):
        raise ConfigError(f"excluded indices must be in [0, {n})")
    if stakes is not None and len(stakes) != n:
        raise ConfigError(f"stakes must have {n} entries, got {len(stakes)}")
    out = []
    for i, c in enumerate(values):
        s = Fraction(c) if c > 0.0 and i not in excluded else Fraction(0)
        if stakes is not None:
            s *= _stake_factor(int(stakes[i]), config.stake_weighting)
        out.append(s)
    total = sum(out, Fraction(0))
    if config.min_share > 0.0 and total > 0:
        cut = Fraction(config.min_share) * total
        out = [s if s >= cut else Fraction(0) for s in out]
    return out


def split_budget(
    contributions: Sequence[float] | Tensor,
    budget_wei: int,
    *,
    excluded: Collection[int] = (),
    stakes: Sequence[int] | None = None,
    config: RewardConfig = RewardConfig(),
) -> Payout:
    """Split ``budget_wei`` in proportion to positive contribution, exactly, in integer wei."""
    if budget_wei < 0:
        raise ConfigError(f"budget_wei must be >= 0, got {budget_wei}")
    s = payout_scores(contributions, excluded=excluded, stakes=stakes, config=config)
    total = sum(s, Fraction(0))
    if total == 0:
        return Payout(amounts=(0,) * len(s), refund=budget_wei)
    quotas = [budget_wei * si / total for si in s]  # exact; they sum to budget_wei
    amounts = [q.numerator // q.denominator for q in quotas]
    leftover = budget_wei - sum(amounts)
    # Largest remainder; ties to the lower index. leftover < number of non-integer quotas.
    order = sorted(range(len(s)), key=lambda i: (-(quotas[i] - amounts[i]), i))
    for i in order[:leftover]:
        amounts[i] += 1
    assert sum(amounts) == budget_wei
    return Payout(amounts=tuple(amounts), refund=0)


@dataclass(frozen=True)
class ReputationConfig:
    alpha: float = 0.3  # EMA weight of the newest round, in (0, 1]
    initial: float = 0.1  # reputation of a provider never seen before
    floor: float = 0.01  # minimum selection weight, so newcomers and the reformed can re-enter

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.floor <= 0.0:
            raise ConfigError(f"floor must be > 0, got {self.floor}")


class Reputation:
    """Per-provider EMA of normalised signed contribution; feeds the next round's selection."""

    def __init__(self, config: ReputationConfig = ReputationConfig()) -> None:
        self.config = config
        self._scores: dict[str, float] = {}

    def get(self, provider: str) -> float:
        return self._scores.get(provider, self.config.initial)

    def as_dict(self) -> dict[str, float]:
        return dict(self._scores)

    def update(
        self,
        providers: Sequence[str],
        contributions: Sequence[float] | Tensor,
        *,
        excluded: Collection[int] = (),
    ) -> None:
        """Fold one round's contributions into the EMA (providers absent this round keep
        their reputation)."""
        values = _as_floats(contributions)
        if len(values) != len(providers) or len(set(providers)) != len(providers):
            raise ConfigError("providers must be unique and match contributions one to one")
        values = [min(c, 0.0) if i in excluded else c for i, c in enumerate(values)]
        scale = sum(abs(c) for c in values)
        a = self.config.alpha
        for p, c in zip(providers, values, strict=True):
            signal = c / scale if scale > 0.0 else 0.0
            self._scores[p] = (1.0 - a) * self.get(p) + a * signal

    def selection_weights(
        self, providers: Sequence[str], *, stakes: Sequence[float] | None = None
    ) -> list[float]:
        """max(reputation, floor), times stake if given."""
        if stakes is not None and len(stakes) != len(providers):
            raise ConfigError("stakes must match providers one to one")
        w = [max(self.get(p), self.config.floor) for p in providers]
        if stakes is not None:
            if any(s < 0 for s in stakes):
                raise ConfigError("stakes must be >= 0")
            w = [wi * float(si) for wi, si in zip(w, stakes, strict=True)]
        return w


def select_participants(
    providers: Sequence[str], weights: Sequence[float], k: int, *, seed: int
) -> list[str]:
    """Draw k providers without replacement, P ∝ weight (Efraimidis & Spirakis 2006).

    Key_i = log(u_i) / w_i with u_i ~ U(0, 1] from ``default_rng(seed)``; the k largest keys win,
    ties broken by provider id. Zero-weight providers are never drawn. Deterministic in the seed.
    """
    if len(weights) != len(providers):
        raise ConfigError("weights must match providers one to one")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError("weights must be finite and >= 0")
    eligible = [i for i, w in enumerate(weights) if w > 0]
    if not 0 <= k <= len(eligible):
        raise ConfigError(f"k must be in [0, {len(eligible)}], got {k}")
    u = 1.0 - np.random.default_rng(seed).random(len(providers))  # (0, 1]
    keys = {i: float(np.log(u[i])) / weights[i] for i in eligible}
    chosen = sorted(eligible, key=lambda i: (-keys[i], providers[i]))[:k]
    return [providers[i] for i in chosen]
