"""Contribution evaluators by name: the enum, a frozen config and the registry.

A validator builds the round's :class:`~deai.incentives.game.CoalitionUtility` and calls
:func:`evaluate_contributions` with the job's :class:`EvaluatorConfig`; every honest validator
with the same inputs and config gets bit-identical values (see each module for why).

| name            | module      | cost (utility evaluations)       | sampling |
|-----------------|-------------|----------------------------------|----------|
| exact           | shapley.py  | 2^n                              | none     |
| tmc             | shapley.py  | ≤ 2 + (n − 1) · permutations     | seeded   |
| gtg             | shapley.py  | ≤ 2 + (n − 1) · permutations     | seeded   |
| loo             | loo.py      | n + 1                            | none     |
| loss_reduction  | proxies.py  | n + 1                            | none     |
| cosine          | proxies.py  | 0 (one aggregation)              | none     |
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from deai.errors import ConfigError
from deai.incentives.game import CoalitionUtility
from deai.incentives.loo import leave_one_out
from deai.incentives.proxies import cosine_to_aggregate, loss_reduction
from deai.incentives.shapley import exact_shapley, gtg_shapley, tmc_shapley


class EvaluatorName(enum.StrEnum):
    EXACT = "exact"  # exact Shapley, the reference
    TMC = "tmc"  # truncated Monte-Carlo Shapley (Ghorbani & Zou 2019)
    GTG = "gtg"  # GTG-Shapley (Liu et al. 2022)
    LOO = "loo"  # leave-one-out
    LOSS_REDUCTION = "loss_reduction"  # v({i}) − v(∅)
    COSINE = "cosine"  # cosine similarity to the aggregate


@dataclass(frozen=True)
class EvaluatorConfig:
    name: EvaluatorName = EvaluatorName.GTG  # which evaluator
    seed: int = 0  # sampling seed; derive it from (job id, round) so validators agree
    max_permutations: int = 200  # tmc/gtg: hard cap on sampled permutations
    max_evaluations: int | None = None  # tmc/gtg: budget of utility evaluations (None: no cap)
    truncation_tol: float = 0.01  # tmc/gtg: within-round truncation, × |v(N) − v(∅)|
    between_round_tol: float = 0.0  # gtg: skip the round if |v(N) − v(∅)| <= this (absolute)
    convergence_tol: float = 0.01  # tmc/gtg: stop when mean relative change per n perms < this
    exact_max_players: int = 16  # exact: refuse games larger than this (2^n evaluations)

    def __post_init__(self) -> None:
        if not isinstance(self.name, EvaluatorName):
            raise ConfigError(f"name must be an EvaluatorName, got {self.name!r}")
        if self.max_permutations < 1:
            raise ConfigError(f"max_permutations must be >= 1, got {self.max_permutations}")
        if self.max_evaluations is not None and self.max_evaluations < 1:
            raise ConfigError(f"max_evaluations must be >= 1, got {self.max_evaluations}")
        for field in ("truncation_tol", "between_round_tol", "convergence_tol"):
            if getattr(self, field) < 0.0:
                raise ConfigError(f"{field} must be >= 0, got {getattr(self, field)}")


@dataclass(frozen=True)
class Contributions:
    name: EvaluatorName  # evaluator that produced the values
    values: Tensor  # [n] float64 contribution of each update
    evaluations: int  # distinct utility evaluations this call spent


Evaluator = Callable[[CoalitionUtility, EvaluatorConfig], Tensor]


def _exact(game: CoalitionUtility, cfg: EvaluatorConfig) -> Tensor:
    return exact_shapley(game, max_players=cfg.exact_max_players)


def _tmc(game: CoalitionUtility, cfg: EvaluatorConfig) -> Tensor:
    return tmc_shapley(
        game,
        seed=cfg.seed,
        max_permutations=cfg.max_permutations,
        truncation_tol=cfg.truncation_tol,
        convergence_tol=cfg.convergence_tol,
        max_evaluations=cfg.max_evaluations,
    )


def _gtg(game: CoalitionUtility, cfg: EvaluatorConfig) -> Tensor:
    return gtg_shapley(
        game,
        seed=cfg.seed,
        max_permutations=cfg.max_permutations,
        truncation_tol=cfg.truncation_tol,
        between_round_tol=cfg.between_round_tol,
        convergence_tol=cfg.convergence_tol,
        max_evaluations=cfg.max_evaluations,
    )


EVALUATORS: dict[EvaluatorName, Evaluator] = {
    EvaluatorName.EXACT: _exact,
    EvaluatorName.TMC: _tmc,
    EvaluatorName.GTG: _gtg,
    EvaluatorName.LOO: lambda game, cfg: leave_one_out(game),
    EvaluatorName.LOSS_REDUCTION: lambda game, cfg: loss_reduction(game),
    EvaluatorName.COSINE: lambda game, cfg: cosine_to_aggregate(game),
}


def evaluate_contributions(game: CoalitionUtility, config: EvaluatorConfig) -> Contributions:
    """Run the configured evaluator on the game; report values and the evaluations spent."""
    before = game.evaluations
    values = EVALUATORS[config.name](game, config)
    return Contributions(name=config.name, values=values, evaluations=game.evaluations - before)
