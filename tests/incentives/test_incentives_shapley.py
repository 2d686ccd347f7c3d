"""Shapley axioms for the exact evaluator, convergence and determinism of the estimators."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from deai.errors import ConfigError
from deai.incentives import (
    EVALUATORS,
    CoalitionUtility,
    EvaluatorConfig,
    EvaluatorName,
    evaluate_contributions,
    exact_shapley,
    gtg_shapley,
    leave_one_out,
    loss_reduction,
    tmc_shapley,
)


# Table games: update i is the i-th unit vector, the aggregate is the plain sum (so the rebuilt
# model is S's indicator vector) and evaluate decodes the indicator and looks v(S) up.
def _sum(updates: Tensor, weights: Tensor) -> Tensor:
    return updates.sum(0)


def table_game(values: Sequence[float]) -> CoalitionUtility:
    """The game with v(mask) = values[mask]; len(values) must be 2^n."""
    n = len(values).bit_length() - 1
    assert len(values) == 1 << n

    def evaluate(params: Tensor) -> float:
        mask = sum(1 << i for i in range(n) if params[i] > 0.5)
        return float(values[mask])

    return CoalitionUtility(
        torch.zeros(n, dtype=torch.float64),
        torch.eye(n, dtype=torch.float64),
        torch.ones(n, dtype=torch.float64),
        evaluate,
        _sum,
    )


def set_game(n: int, fn: Callable[[frozenset[int]], float]) -> CoalitionUtility:
    """The game with v(S) = fn(S)."""
    return table_game([fn(frozenset(i for i in range(n) if m >> i & 1)) for m in range(1 << n)])


values_st = st.integers(1, 6).flatmap(
    lambda n: st.lists(
        st.floats(-10, 10, allow_nan=False, allow_infinity=False), min_size=1 << n, max_size=1 << n
    )
)


@settings(max_examples=60, deadline=None)
@given(values_st)
def test_exact_is_efficient(values: list[float]) -> None:
    phi = exact_shapley(table_game(values))
    assert float(phi.sum()) == pytest.approx(values[-1] - values[0], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=6), st.integers(0, 10**6))
def test_exact_symmetry_and_null_player(weights: list[float], seed: int) -> None:
    # v(S) = h(Σ_{i∈S} a_i) with a nonlinear h: players with equal a are symmetric,
    # a player with a = 0 is null.
    a = [*weights]
    a[1] = a[0]  # players 0 and 1 symmetric
    a[-1] = 0.0  # last player null (n >= 2, it may coincide with player 1 only if n == 2)
    if len(a) == 2:
        a = [a[0], a[0], 0.0]
    gen = torch.Generator().manual_seed(seed)
    c = float(torch.rand(1, generator=gen))
    game = set_game(len(a), lambda s: math.tanh(c * sum(a[i] for i in s)))
    phi = exact_shapley(game)
    assert float(phi[0]) == pytest.approx(float(phi[1]), abs=1e-9)
    assert float(phi[-1]) == pytest.approx(0.0, abs=1e-9)


def _pair_of_tables(n: int) -> st.SearchStrategy[tuple[list[float], list[float]]]:
    table = st.lists(st.floats(-10, 10), min_size=1 << n, max_size=1 << n)
    return st.tuples(table, table)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5).flatmap(_pair_of_tables))
def test_exact_is_additive(pair: tuple[list[float], list[float]]) -> None:
    v, w = pair
    both = exact_shapley(table_game([a + b for a, b in zip(v, w, strict=True)]))
    torch.testing.assert_close(both, exact_shapley(table_game(v)) + exact_shapley(table_game(w)))


def test_exact_known_games() -> None:
    # majority of three: each player gets 1/3
    phi = exact_shapley(set_game(3, lambda s: float(len(s) >= 2)))
    torch.testing.assert_close(phi, torch.full((3,), 1 / 3, dtype=torch.float64))
    # glove game: player 0 holds a left glove, 1 and 2 right gloves -> (2/3, 1/6, 1/6)
    phi = exact_shapley(set_game(3, lambda s: float(0 in s and bool(s & {1, 2}))))
    torch.testing.assert_close(phi, torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64))


def test_exact_cost_and_limit() -> None:
    game = set_game(5, lambda s: float(len(s) ** 2))
    c = evaluate_contributions(game, EvaluatorConfig(EvaluatorName.EXACT))
    assert c.evaluations == 32
    with pytest.raises(ConfigError):
        exact_shapley(set_game(5, len), max_players=4)


def _nonadditive(n: int) -> list[float]:
    gen = torch.Generator().manual_seed(n)
    a = torch.rand(n, generator=gen) - 0.2
    return [
        math.sqrt(max(float(sum(a[i] for i in range(n) if m >> i & 1)), 0.0)) for m in range(1 << n)
    ]


@pytest.mark.parametrize("estimator", [tmc_shapley, gtg_shapley])
def test_monte_carlo_converges_to_exact(estimator: object) -> None:
    values = _nonadditive(6)
    exact = exact_shapley(table_game(values))
    est = estimator(  # type: ignore[operator]
        table_game(values), seed=0, max_permutations=3000, truncation_tol=0.0, convergence_tol=0.0
    )
    assert float((est - exact).abs().max()) < 0.02


@pytest.mark.parametrize("name", [EvaluatorName.TMC, EvaluatorName.GTG])
def test_additive_game_is_exact_after_one_cycle(name: EvaluatorName) -> None:
    a = [0.5, -1.0, 2.0, 0.0, 0.25]
    game = set_game(5, lambda s: sum(a[i] for i in s))
    cfg = EvaluatorConfig(name, max_permutations=5, truncation_tol=0.0)
    c = evaluate_contributions(game, cfg)
    torch.testing.assert_close(c.values, torch.tensor(a, dtype=torch.float64))


@pytest.mark.parametrize("name", [EvaluatorName.TMC, EvaluatorName.GTG])
def test_estimators_are_deterministic_in_the_seed(name: EvaluatorName) -> None:
    values = _nonadditive(7)
    runs = [
        evaluate_contributions(
            table_game(values), EvaluatorConfig(name, seed=s, max_permutations=9)
        )
        for s in (4, 4, 5)
    ]
    assert torch.equal(runs[0].values, runs[1].values)  # bit-identical
    assert runs[0].evaluations == runs[1].evaluations
    assert not torch.equal(runs[0].values, runs[2].values)


@pytest.mark.parametrize("name", [EvaluatorName.TMC, EvaluatorName.GTG])
@pytest.mark.parametrize("budget", [20, 33, 64])
def test_budget_is_never_exceeded(name: EvaluatorName, budget: int) -> None:
    game = table_game(_nonadditive(8))
    c = evaluate_contributions(
        game, EvaluatorConfig(name, max_evaluations=budget, truncation_tol=0)
    )
    assert c.evaluations <= budget
    assert c.evaluations >= budget - 8  # it spends most of it


def test_budget_too_small_is_refused() -> None:
    with pytest.raises(ConfigError):
        gtg_shapley(table_game(_nonadditive(8)), seed=0, max_evaluations=10)


def test_truncation_saves_evaluations() -> None:
    # a game that saturates after two players: truncation stops the walks early
    game_t = set_game(8, lambda s: float(min(len(s), 2)))
    game_f = set_game(8, lambda s: float(min(len(s), 2)))
    tmc_shapley(game_t, seed=1, max_permutations=16, truncation_tol=0.01)
    tmc_shapley(game_f, seed=1, max_permutations=16, truncation_tol=0.0)
    assert game_t.evaluations < game_f.evaluations


def test_gtg_between_round_truncation() -> None:
    game = set_game(6, lambda s: 1.0 if s and len(s) < 6 else 0.0)  # v(N) == v(∅)
    phi = gtg_shapley(game, seed=0, between_round_tol=1e-6)
    assert torch.equal(phi, torch.zeros(6, dtype=torch.float64))
    assert game.evaluations == 2


def test_loo_and_loss_reduction() -> None:
    values = _nonadditive(4)
    loo = leave_one_out(table_game(values))
    lr = loss_reduction(table_game(values))
    for i in range(4):
        assert float(loo[i]) == pytest.approx(values[15] - values[15 & ~(1 << i)])
        assert float(lr[i]) == pytest.approx(values[1 << i] - values[0])


def test_registry_covers_every_name() -> None:
    assert set(EVALUATORS) == set(EvaluatorName)
    values = _nonadditive(4)
    for name in EvaluatorName:
        c = evaluate_contributions(table_game(values), EvaluatorConfig(name))
        assert c.values.shape == (4,) and c.values.dtype == torch.float64
        assert bool(torch.isfinite(c.values).all())


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError):
        EvaluatorConfig(max_permutations=0)
    with pytest.raises(ConfigError):
        EvaluatorConfig(truncation_tol=-1.0)
    with pytest.raises(ConfigError):
        EvaluatorConfig(name="gtg")  # type: ignore[arg-type]
