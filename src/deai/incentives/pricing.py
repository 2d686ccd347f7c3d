"""Pricing mechanisms: who is hired, and at what price, before a round is trained.

Contribution evaluators pay for work after the fact; these mechanisms price it beforehand,
from bids or announced costs. Both are options a requester can choose for a job; neither is on
the payout path of :mod:`deai.incentives.rewards`. Prices are floats (they are decisions, not
settlements); convert to wei with :func:`deai.incentives.rewards.split_budget` or by flooring.

Reverse auction: the proportional-share mechanism of Singer (2010, "Budget feasible
mechanisms", FOCS) for additive values. Providers bid a cost c_i for delivering value v_i > 0
(say, examples × estimated quality from reputation; the value must not come from the bid).
Sort by c_i / v_i (ties to the lower index) and hire the largest prefix S_k with
c_k <= B · v_k / V(S_k). Each winner is paid its threshold bid: the largest bid with which it
would still have been hired, others fixed. Guarantees (Singer 2010, Thm. 3.1; tested here):
truthful bidding is a dominant strategy, winners are paid at least their bid (individual
rationality), and payments never exceed B (budget feasibility). Assumptions: values are
additive and known to the buyer, costs are private, bidders do not collude (a cartel can raise
thresholds) and one provider is one bidder (Sybils that split value can change the ordering).

Stackelberg pricing: the requester leads with a total reward R, shared in proportion to effort
(Sarikaya & Ercetin 2019, "Motivating workers in federated learning: a Stackelberg game
perspective"; Khan et al. 2020). Provider i chooses effort x_i >= 0 (examples, epochs) at
constant unit cost c_i and earns R · x_i / Σ_j x_j − c_i · x_i. Its best response to the others'
total Y > 0 is x_i = max(0, sqrt(R · Y / c_i) − Y). The followers' Nash equilibrium is closed
form: the participants P are the cheapest providers with c_i < Σ_{j∈P} c_j / (|P| − 1), total
effort X = (|P| − 1) · R / Σ_{j∈P} c_j and x_i = X · (1 − (|P| − 1) · c_i / Σ_{j∈P} c_j). The leader
values total effort by λ · log(1 + X) and pays R, so its optimum is R* = max(0, λ − 1/K) with
K = X / R. Optional quality weights q_i turn effort into effective effort q_i · x_i (unit cost
c_i / q_i). Assumptions: costs are known to the leader (announced or learnt), providers are
rational and risk neutral, effort is verifiable (the verification plane audits it), and there
are at least two providers (a sole provider's best response to Y = 0 does not exist).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deai.errors import ConfigError


@dataclass(frozen=True)
class AuctionResult:
    winners: tuple[int, ...]  # indices of hired bidders, in allocation order
    payments: tuple[float, ...]  # threshold payment of every bidder (0 for losers)

    @property
    def total(self) -> float:
        return sum(self.payments)


def _check_auction(costs: Sequence[float], values: Sequence[float], budget: float) -> None:
    if len(costs) != len(values):
        raise ConfigError("costs and values must have the same length")
    if not (math.isfinite(budget) and budget >= 0.0):
        raise ConfigError(f"budget must be finite and >= 0, got {budget}")
    if any(not (math.isfinite(c) and c >= 0.0) for c in costs):
        raise ConfigError("costs must be finite and >= 0")
    if any(not (math.isfinite(v) and v > 0.0) for v in values):
        raise ConfigError("values must be finite and > 0")


def _order(costs: Sequence[float], values: Sequence[float], ids: Sequence[int]) -> list[int]:
    return sorted(ids, key=lambda i: (costs[i] / values[i], i))


def _allocate(
    costs: Sequence[float], values: Sequence[float], budget: float, order: Sequence[int]
) -> list[int]:
    """Largest prefix of ``order`` whose last member meets c_k <= B · v_k / V(S_k).

    The condition's left side grows and its right side shrinks along the order, so the
    indices that satisfy it form a prefix (Singer 2010)."""
    hired: list[int] = []
    acc = 0.0
    for i in order:
        acc += values[i]
        if costs[i] > budget * values[i] / acc:
            break
        hired.append(i)
    return hired


def proportional_share_auction(
    costs: Sequence[float], values: Sequence[float], budget: float
) -> AuctionResult:
    """Singer's (2010) budget-feasible reverse auction for additive values."""
    _check_auction(costs, values, budget)
    n = len(costs)
    order = _order(costs, values, range(n))
    winners = _allocate(costs, values, budget, order)
    payments = [0.0] * n
    for i in winners:
        others = [j for j in order if j != i]
        best = 0.0
        before = 0.0  # V of the others ahead of position j
        for pos in range(n):  # i placed just before others[pos] (pos == n - 1: last)
            rank_cap = (
                values[i] * costs[others[pos]] / values[others[pos]] if pos < n - 1 else math.inf
            )
            share_cap = budget * values[i] / (before + values[i])
            best = max(best, min(rank_cap, share_cap))
            if pos < n - 1:
                before += values[others[pos]]
        payments[i] = best
    return AuctionResult(winners=tuple(winners), payments=tuple(payments))


@dataclass(frozen=True)
class StackelbergEquilibrium:
    reward: float  # the leader's total reward R
    efforts: tuple[float, ...]  # each follower's equilibrium effort x_i (0: stays out)
    payments: tuple[float, ...]  # R · q_i x_i / Σ q_j x_j
    leader_utility: float  # λ · log(1 + Σ q_i x_i) − R
    follower_utilities: tuple[float, ...]  # payment − c_i · x_i


def _effective_costs(unit_costs: Sequence[float], quality: Sequence[float] | None) -> list[float]:
    if any(not (math.isfinite(c) and c > 0.0) for c in unit_costs):
        raise ConfigError("unit costs must be finite and > 0")
    if quality is None:
        return [float(c) for c in unit_costs]
    if len(quality) != len(unit_costs) or any(not (math.isfinite(q) and q > 0) for q in quality):
        raise ConfigError("quality must match unit_costs and be finite and > 0")
    return [c / q for c, q in zip(unit_costs, quality, strict=True)]


def follower_best_response(reward: float, others_effort: float, unit_cost: float) -> float:
    """argmax_x R · x / (x + Y) − c · x = max(0, sqrt(R · Y / c) − Y), for Y > 0."""
    if others_effort <= 0.0:
        raise ConfigError("best response is undefined when the others exert no effort")
    if reward < 0.0 or unit_cost <= 0.0:
        raise ConfigError("reward must be >= 0 and unit_cost > 0")
    return max(0.0, math.sqrt(reward * others_effort / unit_cost) - others_effort)


def _participants(costs: Sequence[float]) -> list[int]:
    """The equilibrium's active set: the longest cheapest prefix with c_k < Σ c / (|P| − 1)."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], i))
    active = order[:2]
    for i in order[2:]:
        trial = [*active, i]
        if costs[i] < sum(costs[j] for j in trial) / (len(trial) - 1):
            active = trial
        else:
            break
    return active


def follower_equilibrium(
    reward: float, unit_costs: Sequence[float], quality: Sequence[float] | None = None
) -> tuple[float, ...]:
    """The followers' Nash equilibrium efforts for a posted total reward (closed form)."""
    if len(unit_costs) < 2:
        raise ConfigError("a proportional-share contest needs at least two providers")
    if not (math.isfinite(reward) and reward >= 0.0):
        raise ConfigError(f"reward must be finite and >= 0, got {reward}")
    eff = _effective_costs(unit_costs, quality)
    active = _participants(eff)
    total_cost = sum(eff[j] for j in active)
    m = len(active)
    big_x = (m - 1) * reward / total_cost  # total effective effort
    efforts = [0.0] * len(eff)
    for i in active:
        effective = big_x * (1.0 - (m - 1) * eff[i] / total_cost)
        efforts[i] = effective / (1.0 if quality is None else quality[i])
    return tuple(efforts)


def stackelberg_pricing(
    unit_costs: Sequence[float], value_scale: float, quality: Sequence[float] | None = None
) -> StackelbergEquilibrium:
    """The leader's optimal reward R* = max(0, λ − 1/K) and the followers' response to it."""
    if not (math.isfinite(value_scale) and value_scale > 0.0):
        raise ConfigError(f"value_scale must be finite and > 0, got {value_scale}")
    eff = _effective_costs(unit_costs, quality)
    active = _participants(eff)
    k = (len(active) - 1) / sum(eff[j] for j in active)  # X = K · R
    reward = max(0.0, value_scale - 1.0 / k)
    efforts = follower_equilibrium(reward, unit_costs, quality)
    q = [1.0] * len(eff) if quality is None else list(quality)
    weighted = [qi * xi for qi, xi in zip(q, efforts, strict=True)]
    big_x = sum(weighted)
    payments = tuple(reward * w / big_x if big_x > 0 else 0.0 for w in weighted)
    return StackelbergEquilibrium(
        reward=reward,
        efforts=efforts,
        payments=payments,
        leader_utility=value_scale * math.log1p(big_x) - reward,
        follower_utilities=tuple(
            p - c * x for p, c, x in zip(payments, unit_costs, efforts, strict=True)
        ),
    )
