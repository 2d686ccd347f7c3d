"""A validator's payout vector for a round: contribution on the requester's validation
data (``deai.incentives``), split of the round budget in exact integer wei.

Every honest validator computes the same vector: the game is built from the round's
accepted updates in a fixed order, the evaluator's seed is derived from (job, round), and
evaluation runs on the same validation data with deterministic kernels. Updates the
aggregator excluded and rejected updates earn nothing; so do contributions <= 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from deai.incentives.evaluators import EvaluatorConfig, evaluate_contributions
from deai.incentives.game import CoalitionUtility
from deai.incentives.rewards import split_budget
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.node.hooks import RoundOutcome
from deai.node.job import derive_seed


class RoundPayouts:
    def __init__(
        self,
        model: FlatModel,
        validation: Dataset,
        evaluator: EvaluatorConfig,
        round_budget_wei: int,
        server_lr: float = 1.0,
    ) -> None:
        self.model = model
        self.validation = validation
        self.evaluator = evaluator
        self.round_budget_wei = round_budget_wei
        self.server_lr = server_lr
        self.last_contributions: dict[str, float] = {}

    def _utility(self, params: Tensor) -> float:
        with torch.no_grad():
            logits = self.model.forward(params, self.validation.x)
            return -float(F.cross_entropy(logits, self.validation.y))

    def __call__(self, outcome: RoundOutcome) -> dict[str, int]:
        """Wei per provider for this round (every accepted sender appears, maybe with 0)."""
        self.last_contributions = {}
        if outcome.updates is None or outcome.start_params is None or not outcome.accepted:
            return {}
        game = CoalitionUtility(
            outcome.start_params,
            outcome.updates,
            torch.tensor(outcome.weights),
            self._utility,
            server_lr=self.server_lr,
        )
        seed = derive_seed(outcome.job_id, outcome.round, "contributions")
        config = EvaluatorConfig(
            name=self.evaluator.name,
            seed=seed % 2**31,
            max_permutations=self.evaluator.max_permutations,
            max_evaluations=self.evaluator.max_evaluations,
        )
        values = evaluate_contributions(game, config).values
        excluded = [i for i, s in enumerate(outcome.accepted) if s in set(outcome.excluded)]
        payout = split_budget(values, self.round_budget_wei, excluded=excluded)
        self.last_contributions = dict(zip(outcome.accepted, values.tolist(), strict=True))
        return dict(zip(outcome.accepted, payout.amounts, strict=True))
