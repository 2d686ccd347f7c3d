"""Singer's budget-feasible auction and the Stackelberg pricing rule: their guarantees."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError
from deai.incentives import (
    follower_best_response,
    follower_equilibrium,
    proportional_share_auction,
    stackelberg_pricing,
)

bidders = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 1000).map(float), min_size=n, max_size=n),  # costs
        st.lists(st.integers(1, 100).map(float), min_size=n, max_size=n),  # values
    )
)
budgets = st.integers(1, 5000).map(float)


@settings(max_examples=300, deadline=None)
@given(bidders, budgets)
def test_auction_is_budget_feasible_and_individually_rational(
    cv: tuple[list[float], list[float]], budget: float
) -> None:
    costs, values = cv
    res = proportional_share_auction(costs, values, budget)
    assert res.total <= budget * (1 + 1e-9)
    for i, p in enumerate(res.payments):
        if i in res.winners:
            assert p >= costs[i] * (1 - 1e-9)
        else:
            assert p == 0.0


@settings(max_examples=150, deadline=None)
@given(bidders, budgets, st.data())
def test_auction_pays_threshold_bids(
    cv: tuple[list[float], list[float]], budget: float, data: st.DataObject
) -> None:
    costs, values = cv
    res = proportional_share_auction(costs, values, budget)
    assume(res.winners)
    i = data.draw(st.sampled_from(res.winners))
    theta = res.payments[i]
    below, above = list(costs), list(costs)
    below[i] = theta * (1 - 1e-6)
    above[i] = theta * (1 + 1e-6)
    ratios = {costs[j] / values[j] for j in range(len(costs)) if j != i}
    # away from exact ties in the sort order the threshold is sharp
    assume(all(abs(theta / values[i] - r) > 1e-6 * r for r in ratios))
    assert i in proportional_share_auction(below, values, budget).winners
    assert i not in proportional_share_auction(above, values, budget).winners


@settings(max_examples=150, deadline=None)
@given(bidders, budgets, st.data())
def test_auction_is_truthful(
    cv: tuple[list[float], list[float]], budget: float, data: st.DataObject
) -> None:
    costs, values = cv
    i = data.draw(st.integers(0, len(costs) - 1))
    lie = data.draw(st.integers(0, 2000).map(float))

    def utility(bid: float) -> float:
        bids = list(costs)
        bids[i] = bid
        res = proportional_share_auction(bids, values, budget)
        return res.payments[i] - costs[i] if i in res.winners else 0.0

    assert utility(lie) <= utility(costs[i]) + 1e-6 * budget


def test_auction_small_example() -> None:
    # ratios 1, 2, 5; B = 12: S = {0, 1} (c1 = 4 <= 12 * 2 / 4 = 6; c2 = 15 > 12 * 3 / 7)
    res = proportional_share_auction([2.0, 4.0, 15.0], [2.0, 2.0, 3.0], 12.0)
    assert res.winners == (0, 1)
    assert res.total <= 12.0
    assert res.payments[2] == 0.0
    with pytest.raises(ConfigError):
        proportional_share_auction([1.0], [0.0], 1.0)


costs_st = st.lists(st.floats(0.1, 10.0), min_size=2, max_size=8)


@settings(max_examples=200, deadline=None)
@given(costs_st, st.floats(0.5, 100.0))
def test_follower_equilibrium_is_a_nash_equilibrium(costs: list[float], reward: float) -> None:
    x = follower_equilibrium(reward, costs)
    total = sum(x)
    assert total > 0 and sum(1 for e in x if e > 0) >= 2
    for i, c in enumerate(costs):
        br = follower_best_response(reward, total - x[i], c)
        assert br == pytest.approx(x[i], rel=1e-6, abs=1e-9 * reward)

        def u(e: float, i: int = i, c: float = c) -> float:
            return reward * e / (e + total - x[i]) - c * e

        for dev in (0.0, x[i] * 0.5, x[i] * 1.5 + 1e-3):  # no profitable deviation
            assert u(dev) <= u(x[i]) + 1e-9 * reward


@settings(max_examples=100, deadline=None)
@given(costs_st, st.floats(1.0, 100.0))
def test_leader_reward_is_optimal(costs: list[float], lam: float) -> None:
    eq = stackelberg_pricing(costs, lam)

    def leader(r: float) -> float:
        return lam * math.log1p(sum(follower_equilibrium(r, costs))) - r

    assert eq.leader_utility == pytest.approx(leader(eq.reward), abs=1e-9)
    for r in [eq.reward * f for f in (0.0, 0.5, 0.9, 1.1, 2.0)] + [lam * 0.5]:
        assert leader(r) <= eq.leader_utility + 1e-9
    assert sum(eq.payments) == pytest.approx(eq.reward) if eq.reward > 0 else True
    assert all(u >= -1e-9 for u in eq.follower_utilities)  # participation is voluntary


def test_quality_is_an_effective_cost() -> None:
    a = stackelberg_pricing([2.0, 3.0, 4.0], 50.0, quality=[2.0, 1.0, 4.0])
    b = stackelberg_pricing([1.0, 3.0, 1.0], 50.0)
    assert a.reward == pytest.approx(b.reward)
    assert a.payments == pytest.approx(b.payments)


def test_expensive_providers_stay_out() -> None:
    x = follower_equilibrium(10.0, [1.0, 1.0, 5.0])  # 5 >= (1 + 1 + 5) / 2
    assert x[2] == 0.0 and x[0] == x[1] > 0
    with pytest.raises(ConfigError):
        follower_equilibrium(1.0, [1.0])
    with pytest.raises(ConfigError):
        follower_best_response(1.0, 0.0, 1.0)
