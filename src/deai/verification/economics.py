"""When does cheating stop paying? Detection probability and the minimum stake.

Setting (one task, all amounts in the same unit): the fee is ``f``; an honest execution costs
``c``; a cheating strategy costs ``c'`` (``c' = 0`` for random, stale or copied output). The
requester checks a task with probability ``p`` (secret sampling, :mod:`.sampling`); a checked
task goes to ``k - 1`` further workers drawn uniformly from a pool in which a share ``s`` is
controlled by the attacker, who makes all its nodes return the same wrong result. A split
committee is escalated to a fresh committee of ``e`` workers (``e = 0``: no escalation).

Escape probability given the task is checked (draws with replacement, i.e. a large pool):

* no escalation: the attacker controls the verdict when it holds a strict majority of the
  ``k`` workers, i.e. ``Bin(k - 1, s) >= floor(k / 2)``;
* with escalation: only a unanimous committee goes unescalated, so the attacker escapes when
  all ``k - 1`` checkers are its own (``s^(k-1)``) or when it holds a strict majority of the
  escalation committee: ``P_esc = s^(k-1) + (1 - s^(k-1)) * P(Bin(e, s) > e / 2)``.

A lone cheater (``s = 0``) never escapes a checked task. The detection probability per task
is ``p_d = p * q * (1 - P_esc)`` where ``q`` is the chance that a check catches the strategy
(1 for cross-checking with a calibrated tolerance; for a Proof-of-Learning audit, the chance
that a replayed segment covers a fabricated one).

Expected profit of a cheater per task: undetected it keeps the fee, detected it loses the fee
and the slash ``S``; either way it paid ``c'``:

    E[cheat] = (1 - p_d) * f - c' - p_d * S

Cheating is unprofitable outright (``E[cheat] < 0``) when ``S > ((1 - p_d) * f - c') / p_d``
and worse than honesty (``E[cheat] < f - c``) when ``S > (c - c') / p_d - f``. Because an
honest worker earns ``f >= c``, the first bound is the larger one, and it is largest for a
free strategy (``c' = 0``):

    S_min = f * (1 - p_d) / p_d

which makes every strategy's expected profit negative. The slash must be collectable: a
worker's bonded stake must cover ``S`` for every task it has in flight; expected profit is
linear in the number of tasks, so the per-task condition suffices for any number of tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deai.errors import ConfigError


def _binom_tail(n: int, s: float, at_least: int) -> float:
    """``P(Bin(n, s) >= at_least)``."""
    return sum(math.comb(n, i) * s**i * (1 - s) ** (n - i) for i in range(at_least, n + 1))


def escape_probability(share: float, k: int = 3, escalation: int = 0) -> float:
    """Probability that an attacker holding ``share`` of the pool controls a checked task's
    verdict (module docstring)."""
    if not 0.0 <= share < 1.0 or k < 1 or escalation < 0:
        raise ConfigError(f"economics: bad share={share}, k={k} or escalation={escalation}")
    if escalation == 0:
        return _binom_tail(k - 1, share, k // 2)
    unanimous = share ** (k - 1)
    return unanimous + (1 - unanimous) * _binom_tail(escalation, share, escalation // 2 + 1)


def detection_probability(
    rate: float, share: float = 0.0, k: int = 3, escalation: int = 0, catch: float = 1.0
) -> float:
    """``p_d = rate * catch * (1 - escape_probability(share, k, escalation))``."""
    if not 0.0 <= rate <= 1.0 or not 0.0 <= catch <= 1.0:
        raise ConfigError(f"economics: bad rate={rate} or catch={catch}")
    return rate * catch * (1 - escape_probability(share, k, escalation))


def detection_within(p_detect: float, tasks: int) -> float:
    """Probability that a cheater cheating on every one of ``tasks`` tasks is caught at least
    once: ``1 - (1 - p_d)^tasks``."""
    return 1.0 - (1.0 - p_detect) ** tasks


def required_rate(target: float, tasks: int, escape: float = 0.0, catch: float = 1.0) -> float:
    """Smallest sampling rate with ``detection_within(p_d, tasks) >= target``."""
    if not 0.0 < target < 1.0 or tasks < 1:
        raise ConfigError(f"economics: bad target={target} or tasks={tasks}")
    per_task = 1.0 - (1.0 - target) ** (1.0 / tasks)
    rate = per_task / (catch * (1.0 - escape))
    if rate > 1.0:
        raise ConfigError("economics: target unreachable with this escape probability")
    return rate


def min_stake(fee: float, p_detect: float, cheat_cost: float = 0.0) -> float:
    """Slash per detected task above which cheating at cost ``cheat_cost`` has negative
    expected profit: ``((1 - p_d) * f - c') / p_d`` (clamped at 0)."""
    if not 0.0 < p_detect <= 1.0:
        raise ConfigError(f"economics: p_detect must be in (0, 1], got {p_detect}")
    return max(0.0, ((1.0 - p_detect) * fee - cheat_cost) / p_detect)


def expected_profit(fee: float, cost: float, p_detect: float, stake: float) -> float:
    """``E = (1 - p_d) * f - c - p_d * S`` for a strategy of cost ``c``."""
    return (1.0 - p_detect) * fee - cost - p_detect * stake


@dataclass(frozen=True)
class StrategyEconomics:
    name: str  # the strategy (a Behaviour value)
    cost: float  # its compute cost per task, in fee units
    catch: float  # measured chance that a check of its task catches it
    p_detect: float  # rate * catch * (1 - escape)
    expected_profit: float  # E[cheat] at the chosen stake
    gain_over_honest: float  # E[cheat] - (f - c_honest); negative means honesty pays more


def strategy_economics(
    name: str,
    cost: float,
    catch: float,
    rate: float,
    escape: float,
    fee: float,
    stake: float,
    honest_cost: float,
) -> StrategyEconomics:
    """Evaluate one strategy at a given stake (benchmark and docs table)."""
    p_d = rate * catch * (1.0 - escape)
    profit = expected_profit(fee, cost, p_d, stake)
    return StrategyEconomics(name, cost, catch, p_d, profit, profit - (fee - honest_cost))


# ---------------------------------------------------------------------------------------
# The stake from measured catch rates (issue 15, finding 6): the system's stake is the
# largest ``S_min`` over every strategy, each at the *lower* 95 % Wilson bound of its
# measured catch rate and at the cartel's escape probability, times ``1 + margin``. The
# benchmark then reports each strategy's expected profit at that stake with its *point*
# estimate, from runs independent of the ones that set the stake.


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    den = 1 + z * z / trials
    mid = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class MeasuredStrategy:
    name: str
    cost: float  # compute cost per task, in fee units
    caught: int  # audited tasks on which the strategy was caught
    audited: int  # audited (checked) tasks it ran

    @property
    def catch(self) -> float:
        return self.caught / self.audited if self.audited else 0.0

    @property
    def catch_low(self) -> float:
        return wilson(self.caught, self.audited)[0]


def measured_stake(
    strategies: list[MeasuredStrategy],
    fee: float,
    rate: float,
    escape: float,
    margin: float = 0.25,
) -> float:
    """``(1 + margin) * max_s min_stake(fee, rate * catch_low_s * (1 - escape), cost_s)``."""
    worst = 0.0
    for s in strategies:
        p_d = rate * s.catch_low * (1.0 - escape)
        if p_d <= 0:
            raise ConfigError(f"economics: strategy {s.name} is never caught; no stake deters it")
        worst = max(worst, min_stake(fee, p_d, s.cost))
    return (1.0 + margin) * worst


def simulate_cartel_escape(share: float, k: int, jury: int, trials: int, seed: int) -> int:
    """Monte Carlo of ``Tasks.vy``'s rules for a cheating primary whose cartel holds
    ``share`` of the workers (checkers drawn from them) and of the jury roll: a unanimous
    group is paid; otherwise someone contests (an honest member outvoted, or the cartel
    outvoted) and a jury of ``jury`` drawn from the roll decides. Returns the number of
    trials in which the cartel's result stood. Formula beside it:
    :func:`escape_probability` with ``escalation = jury``."""
    import random

    rng = random.Random(seed)
    escaped = 0
    for _ in range(trials):
        if all(rng.random() < share for _ in range(k - 1)):
            escaped += 1
            continue
        votes = sum(rng.random() < share for _ in range(jury))
        escaped += 2 * votes > jury
    return escaped
