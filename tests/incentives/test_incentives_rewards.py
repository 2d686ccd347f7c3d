"""Budget split (exact integer wei), reputation and selection."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError
from deai.incentives import (
    Reputation,
    ReputationConfig,
    RewardConfig,
    StakeWeighting,
    payout_scores,
    select_participants,
    split_budget,
)

contribs = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False), max_size=25)
budgets = st.integers(0, 10**24)


@settings(max_examples=200, deadline=None)
@given(contribs, budgets, st.data())
def test_split_conserves_and_is_proportional(
    c: list[float], budget: int, data: st.DataObject
) -> None:
    excluded = data.draw(st.sets(st.integers(0, max(len(c) - 1, 0)))) if c else set()
    pay = split_budget(c, budget, excluded=excluded)
    assert sum(pay.amounts) + pay.refund == budget
    assert all(a >= 0 for a in pay.amounts)
    s = payout_scores(c, excluded=excluded)
    total = sum(s, Fraction(0))
    for i, a in enumerate(pay.amounts):
        if c[i] <= 0 or i in excluded:
            assert a == 0
        if total > 0:
            assert abs(a - budget * s[i] / total) < 1  # within one wei of the exact quota
    # monotone: a larger score never earns less
    for i in range(len(c)):
        for j in range(len(c)):
            if s[i] > s[j]:
                assert pay.amounts[i] >= pay.amounts[j]
    assert pay.refund in (0, budget)


def test_largest_remainder_tie_break_is_by_index() -> None:
    assert split_budget([1.0, 1.0, 1.0], 10).amounts == (4, 3, 3)
    assert split_budget([2.0, 1.0, 1.0], 10).amounts == (5, 3, 2)  # quotas 5, 2.5, 2.5
    big = split_budget([0.1, 0.2, 0.7], 10**18).amounts  # float quotas are not integers
    assert sum(big) == 10**18
    assert [abs(a - q) <= 1 for a, q in zip(big, (10**17, 2 * 10**17, 7 * 10**17), strict=True)]


def test_nobody_positive_refunds_everything() -> None:
    pay = split_budget([-1.0, 0.0, -3.0], 1000)
    assert pay.amounts == (0, 0, 0) and pay.refund == 1000
    assert split_budget([], 5).refund == 5


def test_excluded_and_dust_earn_nothing() -> None:
    pay = split_budget([5.0, 3.0, 2.0], 100, excluded={0})
    assert pay.amounts == (0, 60, 40)
    pay = split_budget([0.5, 0.49, 0.01], 100, config=RewardConfig(min_share=0.05))
    assert pay.amounts[2] == 0 and sum(pay.amounts) == 100


def test_stake_weighting() -> None:
    c = [1.0, 1.0]
    stakes = [100, 400]
    assert split_budget(c, 100, stakes=stakes).amounts == (50, 50)
    linear = RewardConfig(stake_weighting=StakeWeighting.LINEAR)
    assert split_budget(c, 100, stakes=stakes, config=linear).amounts == (20, 80)
    sqrt = RewardConfig(stake_weighting=StakeWeighting.SQRT)
    assert split_budget(c, 90, stakes=stakes, config=sqrt).amounts == (30, 60)
    # a Sybil that splits its stake does not gain under linear weighting
    split = split_budget([1.0, 0.5, 0.5], 100, stakes=[100, 200, 200], config=linear).amounts
    whole = split_budget([1.0, 1.0], 100, stakes=[100, 400], config=linear).amounts
    assert split[1] + split[2] <= whole[1]


@pytest.mark.parametrize(
    "call",
    [
        lambda: split_budget([1.0], -1),
        lambda: split_budget([float("nan")], 10),
        lambda: split_budget([1.0], 10, excluded={3}),
        lambda: split_budget([1.0], 10, stakes=[1, 2]),
        lambda: split_budget([1.0], 10, stakes=[-1], config=RewardConfig(StakeWeighting.LINEAR)),
        lambda: RewardConfig(min_share=1.0),
        lambda: ReputationConfig(alpha=0.0),
    ],
)
def test_bad_inputs_are_config_errors(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]


def test_reputation_ema_and_selection_weights() -> None:
    rep = Reputation(ReputationConfig(alpha=0.5, initial=0.1, floor=0.01))
    rep.update(["a", "b", "c"], [3.0, 1.0, -4.0])  # normalised: 3/8, 1/8, -4/8
    assert rep.get("a") == pytest.approx(0.5 * 0.1 + 0.5 * 3 / 8)
    assert rep.get("c") == pytest.approx(0.5 * 0.1 - 0.5 * 4 / 8)
    assert rep.get("new") == 0.1
    w = rep.selection_weights(["a", "b", "c", "new"])
    assert w[0] > w[1] > w[3] > w[2] == 0.01
    rep.update(["b"], [1.0], excluded={0})  # an excluded update counts as at most 0
    assert rep.get("b") == pytest.approx(0.5 * (0.5 * 0.1 + 0.5 / 8))
    assert rep.selection_weights(["a", "b"], stakes=[0.0, 2.0])[0] == 0.0


def test_reputation_separates_good_from_bad_over_rounds() -> None:
    rep = Reputation()
    for _ in range(10):
        rep.update(["good", "free", "bad"], [1.0, 0.0, -0.5])
    assert rep.get("good") > ReputationConfig().initial > rep.get("free") > rep.get("bad")


def test_selection_is_seeded_and_weighted() -> None:
    ids = ["a", "b", "c", "d"]
    w = [8.0, 1.0, 1.0, 0.0]
    assert select_participants(ids, w, 2, seed=7) == select_participants(ids, w, 2, seed=7)
    counts = {i: 0 for i in ids}
    for seed in range(600):
        (pick,) = select_participants(ids, w, 1, seed=seed)
        counts[pick] += 1
    assert counts["d"] == 0
    assert 0.72 < counts["a"] / 600 < 0.88  # P = 0.8
    assert sorted(select_participants(ids, w, 3, seed=1)) == ["a", "b", "c"]
    with pytest.raises(ConfigError):
        select_participants(ids, w, 4, seed=0)  # only three have positive weight
