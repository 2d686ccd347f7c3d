"""The within-round game on a real model: memo, cost, failures, and values that make sense."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.aggregation.base import weighted_mean
from deai.errors import AggregationError, ConfigError
from deai.incentives import (
    CoalitionUtility,
    EvaluatorConfig,
    EvaluatorName,
    cosine_to_aggregate,
    evaluate_contributions,
    exact_shapley,
)


def _regression_round() -> tuple[Tensor, Tensor, Tensor, nn.Module, Tensor, Tensor]:
    """A linear model y = X w*, four providers: two honest, one sign-flipper, one free-rider."""
    gen = torch.Generator().manual_seed(0)
    w_star = torch.randn(5, generator=gen)
    model = nn.Linear(5, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    glob = parameters_to_vector(model.parameters()).detach().clone()
    updates = []
    for size in (200, 50):
        x = torch.randn(size, 5, generator=gen)
        y = x @ w_star + 0.1 * torch.randn(size, generator=gen)
        local = nn.Linear(5, 1)
        vector_to_parameters(glob.clone(), local.parameters())
        opt = torch.optim.SGD(local.parameters(), lr=0.05)
        for _ in range(20):
            opt.zero_grad()
            F.mse_loss(local(x).squeeze(1), y).backward()
            opt.step()
        updates.append(parameters_to_vector(local.parameters()).detach() - glob)
    updates.append(-updates[0])  # sign-flip attacker
    updates.append(torch.zeros_like(glob))  # free-rider
    x_val = torch.randn(100, 5, generator=gen)
    y_val = x_val @ w_star
    return (
        glob,
        torch.stack(updates),
        torch.tensor([200.0, 50.0, 200.0, 100.0]),
        model,
        x_val,
        y_val,
    )


def _game() -> CoalitionUtility:
    glob, updates, weights, model, x_val, y_val = _regression_round()

    def evaluate(params: Tensor) -> float:
        with torch.no_grad():
            vector_to_parameters(params, model.parameters())
            return -float(F.mse_loss(model(x_val).squeeze(1), y_val))

    return CoalitionUtility(glob, updates, weights, evaluate)


def test_values_rank_honest_above_freerider_above_attacker() -> None:
    phi = exact_shapley(_game())
    assert float(phi[0]) > float(phi[1]) > 0.0  # more data, more value
    assert float(phi[2]) < 0.0  # the attacker harms
    assert float(phi[2]) < float(phi[3]) < float(phi[1])  # the free-rider is in between


def test_memo_counts_distinct_evaluations() -> None:
    game = _game()
    a = game([0, 2])
    b = game.value(0b101)
    assert a == b
    assert game.evaluations == 1 and game.queries == 2
    assert game.empty() == game.value(0)
    assert torch.equal(game.params(0), game.global_params)


def test_same_inputs_give_bit_identical_values() -> None:
    cfg = EvaluatorConfig(EvaluatorName.GTG, seed=11, max_permutations=8)
    a = evaluate_contributions(_game(), cfg).values
    b = evaluate_contributions(_game(), cfg).values
    assert torch.equal(a, b)


def test_aggregator_failure_means_no_update() -> None:
    glob, updates, weights, *_ = _regression_round()

    def needs_three(u: Tensor, w: Tensor) -> Tensor:
        if u.shape[0] < 3:
            raise AggregationError("needs three rows")
        return u.mean(0)

    game = CoalitionUtility(glob, updates, weights, lambda p: float(p.sum()), needs_three)
    assert game([0, 1]) == game.empty()
    assert game.failed_aggregations == 1
    assert game([0, 1, 3]) != game.empty()


def test_accepts_an_aggregator_that_returns_an_aggregate() -> None:
    glob, updates, weights, *_ = _regression_round()
    game = CoalitionUtility(glob, updates, weights, lambda p: float(p.sum()), weighted_mean)
    expected = glob + weighted_mean(updates[[0, 1]], weights[[0, 1]]).vector
    assert game([0, 1]) == pytest.approx(float(expected.sum()))


def test_cosine_proxy() -> None:
    glob = torch.zeros(3)
    updates = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0.0, 0, 0], [0.0, 1, 0]])
    game = CoalitionUtility(glob, updates, torch.tensor([3.0, 1, 1, 0]), lambda p: 0.0)
    cos = cosine_to_aggregate(game)  # aggregate = (2/5, 0, 0)
    torch.testing.assert_close(cos, torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64))
    assert game.evaluations == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"updates": torch.zeros(3, 4)},
        {"weights": torch.ones(2)},
        {"weights": torch.tensor([1.0, -1.0, 1.0])},
        {"updates": torch.tensor([[float("nan")] * 5] * 3)},
        {"server_lr": 0.0},
    ],
)
def test_rejects_bad_inputs(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "global_params": torch.zeros(5),
        "updates": torch.zeros(3, 5),
        "weights": torch.ones(3),
        "evaluate": lambda p: 0.0,
    }
    args.update(kwargs)
    with pytest.raises(ConfigError):
        CoalitionUtility(**args)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CoalitionUtility(torch.zeros(5), torch.zeros(3, 5), torch.ones(3), lambda p: 0.0)([3])
