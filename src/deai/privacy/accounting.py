"""Privacy accounting and the job's (epsilon, delta) budget.

A thin stateful wrapper over Opacus' accountants (Mironov 2017 Rényi DP, ``RDP``; Gopi et
al. 2021 numerical composition of privacy loss random variables, ``PRV``). Every charge is
a Poisson-subsampled Gaussian mechanism ``(noise_multiplier, sample_rate, steps)``: for
sample-level DP-SGD the sample rate is ``batch_size / n_examples``; for user-level
DP-FedAvg it is the probability that a provider takes part in a round, and one round is one
step. The epsilon we report is the accountant's own value for the same history, so it
equals Opacus' number bit for bit (a test pins this).

Assumptions: participation is Poisson sampled with the stated rate (fixed-size sampling
is not what the analysis covers); the noise really is Gaussian with standard deviation
``noise_multiplier * clip``; each user's contribution is clipped to ``clip``.
Budgets are checked *before* a charge is recorded: a charge that would push epsilon above
the budget raises :class:`~deai.errors.BudgetExhausted` and leaves the state unchanged,
so a job never spends more than its budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.accountant import IAccountant
from opacus.accountants.utils import get_noise_multiplier

from deai.errors import BudgetExhausted, ConfigError


class AccountantKind(Enum):
    RDP = "rdp"  # Rényi DP (Mironov 2017; Mironov, Talwar, Zhang 2019): fast, slightly loose
    PRV = "prv"  # PRV accountant (Gopi, Lee, Wutschitz 2021): tight, slower; upper bound used


@dataclass(frozen=True)
class PrivacyBudget:
    """A job's total (epsilon, delta) budget."""

    epsilon: float  # total epsilon the job may spend, > 0
    delta: float  # target delta, in (0, 1); usually well below 1 / (number of users)

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"privacy budget epsilon must be finite and > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy budget delta must be in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class Charge:
    """One Poisson-subsampled Gaussian mechanism, composed ``steps`` times."""

    noise_multiplier: float  # sigma / clip
    sample_rate: float  # Poisson sampling probability per step
    steps: int  # number of compositions


def _check_charge(noise_multiplier: float, sample_rate: float, steps: int) -> Charge:
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise ConfigError(f"noise_multiplier must be finite and > 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    return Charge(float(noise_multiplier), float(sample_rate), int(steps))


def _make(kind: AccountantKind) -> IAccountant:
    return RDPAccountant() if kind is AccountantKind.RDP else PRVAccountant()


class PrivacyAccountant:
    """Composes charges and reports epsilon with Opacus' accountant of the chosen kind.

    The history is kept in Opacus' own format (consecutive identical charges merged, as
    ``IAccountant.step`` does) so ``epsilon`` is exactly Opacus' value for the schedule.
    """

    def __init__(self, kind: AccountantKind = AccountantKind.RDP) -> None:
        self.kind = kind
        self._history: list[tuple[float, float, int]] = []
        self._cache: dict[float, float] = {}  # delta -> epsilon of the current history

    @property
    def history(self) -> tuple[tuple[float, float, int], ...]:
        """(noise_multiplier, sample_rate, steps) entries, in Opacus' format."""
        return tuple(self._history)

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` compositions of the mechanism (no budget check)."""
        c = _check_charge(noise_multiplier, sample_rate, steps)
        self._history = _merged(self._history, c)
        self._cache.clear()

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0.0 before any charge)."""
        if delta not in self._cache:
            self._cache[delta] = _epsilon(self.kind, self._history, delta)
        return self._cache[delta]

    def epsilon_after(
        self, delta: float, noise_multiplier: float, sample_rate: float, steps: int = 1
    ) -> float:
        """Epsilon that would be spent after one more charge; the state is unchanged."""
        c = _check_charge(noise_multiplier, sample_rate, steps)
        return _epsilon(self.kind, _merged(self._history, c), delta)

    def would_exceed(
        self, budget: PrivacyBudget, noise_multiplier: float, sample_rate: float, steps: int = 1
    ) -> bool:
        """True when the next charge would push epsilon above ``budget.epsilon``."""
        eps = self.epsilon_after(budget.delta, noise_multiplier, sample_rate, steps)
        return eps > budget.epsilon

    def charge(
        self, budget: PrivacyBudget, noise_multiplier: float, sample_rate: float, steps: int = 1
    ) -> float:
        """Check the budget, then record the charge; return epsilon after it.

        Raises :class:`BudgetExhausted` (state unchanged) when the charge would exceed the
        budget: the caller stops training before the round runs.
        """
        after = self.epsilon_after(budget.delta, noise_multiplier, sample_rate, steps)
        if after > budget.epsilon:
            spent = self.epsilon(budget.delta)
            raise BudgetExhausted(
                f"privacy budget exhausted: the next round (noise_multiplier={noise_multiplier}, "
                f"sample_rate={sample_rate}, steps={steps}) would raise epsilon from "
                f"{spent:.4f} to {after:.4f}, above the budget epsilon={budget.epsilon} at "
                f"delta={budget.delta}; training stops here"
            )
        self.step(noise_multiplier, sample_rate, steps)
        self._cache[budget.delta] = after
        return after


def _merged(history: list[tuple[float, float, int]], c: Charge) -> list[tuple[float, float, int]]:
    out = list(history)
    if out and out[-1][0] == c.noise_multiplier and out[-1][1] == c.sample_rate:
        out[-1] = (c.noise_multiplier, c.sample_rate, out[-1][2] + c.steps)
    else:
        out.append((c.noise_multiplier, c.sample_rate, c.steps))
    return out


def _epsilon(kind: AccountantKind, history: list[tuple[float, float, int]], delta: float) -> float:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if not history:
        return 0.0
    acc = _make(kind)
    acc.history = list(history)
    return float(acc.get_epsilon(delta=delta))


def calibrate_noise(
    budget: PrivacyBudget,
    sample_rate: float,
    steps: int,
    kind: AccountantKind = AccountantKind.RDP,
    epsilon_tolerance: float = 0.01,
) -> float:
    """Smallest noise multiplier (to ``epsilon_tolerance``) whose ``steps`` compositions at
    ``sample_rate`` stay within ``budget``, via Opacus' ``get_noise_multiplier``.

    Opacus' binary search returns the upper end of its bracket, so the result never
    overshoots the budget.
    """
    _check_charge(1.0, sample_rate, steps)
    try:
        return float(
            get_noise_multiplier(
                target_epsilon=budget.epsilon,
                target_delta=budget.delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=kind.value,
                epsilon_tolerance=epsilon_tolerance,
            )
        )
    except ValueError as e:
        raise ConfigError(f"cannot calibrate noise for {budget}: {e}") from e
