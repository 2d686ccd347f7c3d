from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError
from deai.verification.economics import (
    detection_probability,
    detection_within,
    escape_probability,
    expected_profit,
    min_stake,
    required_rate,
)


def test_required_rate_matches_the_closed_form() -> None:
    p = required_rate(0.99, 100)
    assert 0.045 < p < 0.0451
    assert detection_within(p, 100) == pytest.approx(0.99)


def test_escape_probability_cases() -> None:
    assert escape_probability(0.0) == 0.0
    assert escape_probability(0.1, k=3, escalation=0) == pytest.approx(1 - 0.9**2)
    with_esc = escape_probability(0.1, k=3, escalation=5)
    tail5 = sum(__import__("math").comb(5, i) * 0.1**i * 0.9 ** (5 - i) for i in (3, 4, 5))
    assert with_esc == pytest.approx(0.01 + 0.99 * tail5)
    assert with_esc < escape_probability(0.1, k=3, escalation=0)
    with pytest.raises(ConfigError):
        escape_probability(1.0)


@settings(max_examples=200, deadline=None)
@given(
    fee=st.floats(0.01, 1e6),
    rate=st.floats(0.001, 1.0),
    share=st.floats(0.0, 0.45),
    cost_frac=st.floats(0.0, 1.0),
)
def test_min_stake_makes_every_strategy_unprofitable(
    fee: float, rate: float, share: float, cost_frac: float
) -> None:
    """At S = min_stake(c' = 0) * (1 + 1e-9), any strategy of cost c' >= 0 loses money and
    does worse than honesty whenever the fee covers the honest cost."""
    p_d = detection_probability(rate, share, k=3, escalation=5)
    if p_d <= 0:
        return
    stake = min_stake(fee, p_d) * (1 + 1e-9) + 1e-9
    honest_cost = fee * 0.8
    cheat_cost = honest_cost * cost_frac
    profit = expected_profit(fee, cheat_cost, p_d, stake)
    assert profit < 0
    assert profit < fee - honest_cost


def test_below_min_stake_a_free_cheater_profits() -> None:
    p_d = detection_probability(0.05)
    assert expected_profit(1.0, 0.0, p_d, 0.9 * min_stake(1.0, p_d)) > 0


def test_wilson_interval_brackets_the_rate() -> None:
    from deai.verification.economics import wilson

    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.2
    assert wilson(0, 100)[0] == 0.0 and wilson(100, 100)[1] == pytest.approx(1.0)


def test_measured_stake_deters_every_strategy_at_its_lower_bound() -> None:
    from deai.verification.economics import MeasuredStrategy, measured_stake

    strategies = [
        MeasuredStrategy("int8", 0.5, 300, 300),
        MeasuredStrategy("fabricate_one_segment", 0.9, 90, 300),
    ]
    stake = measured_stake(strategies, fee=1.25, rate=0.05, escape=0.01)
    for s in strategies:
        p_d = 0.05 * s.catch_low * 0.99
        assert expected_profit(1.25, s.cost, p_d, stake) < 0
    with pytest.raises(ConfigError, match="never caught"):
        measured_stake([MeasuredStrategy("x", 0.0, 0, 10)], 1.0, 0.05, 0.0)


def test_cartel_monte_carlo_matches_the_escape_formula() -> None:
    """Issue 15, finding 5: without escalation a 5 % cartel controls 9.75 % of checked
    verdicts (k = 3); with contests and a jury of 7 it controls about 0.27 %."""
    from deai.verification.economics import simulate_cartel_escape, wilson

    assert escape_probability(0.05, k=3) == pytest.approx(0.0975)
    trials = 40_000
    escaped = simulate_cartel_escape(0.05, k=3, jury=7, trials=trials, seed=1)
    lo, hi = wilson(escaped, trials)
    assert lo <= escape_probability(0.05, k=3, escalation=7) <= hi
    assert hi < 0.01
