"""A validator's payout vector for a round, by the payout rule the job spec names.

* ``contribution``: the spec's evaluator (leave-one-out, Shapley estimators) on the
  requester's validation data (``deai.incentives``); contributions <= 0 earn nothing;
* ``weight``: in proportion to aggregation weight (capped claimed example counts);
* ``equal``: equal shares.

Under every rule, updates the aggregator excluded and rejected updates earn nothing, and a
round that applied no update pays nobody (the round's budget stays in escrow and is
refunded). The split is exact in integer wei (``deai.incentives.rewards.split_budget``).

Every honest validator computes the same vector: the game is built from the round's
accepted updates in draw order, the evaluator's seed is derived from (job, round), and
evaluation runs on the same validation data with deterministic kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.incentives.evaluators import EvaluatorConfig, evaluate_contributions
from deai.incentives.game import CoalitionUtility
from deai.incentives.rewards import split_budget
from deai.job.spec import JobSpec, PayoutRule, derive_seed
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.learning.train import evaluate
from deai.node.hooks import RoundOutcome

PAYOUT_RULES = {
    PayoutRule.CONTRIBUTION: "split by measured contribution to the validation loss (the "
    "job's evaluator); non-positive contributions and excluded updates earn nothing",
    PayoutRule.WEIGHT: "split by aggregation weight (capped claimed example counts); "
    "excluded updates earn nothing",
    PayoutRule.EQUAL: "equal shares among the updates the rule kept",
}


class RoundPayouts:
    def __init__(
        self, spec: JobSpec, model: FlatModel, validation: Dataset, round_budget_wei: int
    ) -> None:
        self.spec = spec
        self.model = model
        self.validation = validation
        self.round_budget_wei = round_budget_wei
        self.last_contributions: dict[str, float] = {}

    def _utility(self, params: Tensor) -> float:
        return -evaluate(self.model, params, self.validation)[0]  # classes or next tokens

    def __call__(self, outcome: RoundOutcome) -> dict[str, int]:
        """Wei per provider for this round (every accepted sender appears, maybe with 0)."""
        self.last_contributions = {}
        if not outcome.applied or not outcome.accepted:
            return {}
        excluded = [i for i, s in enumerate(outcome.accepted) if s in set(outcome.excluded)]
        rule = self.spec.contribution.payout
        if rule is PayoutRule.CONTRIBUTION:
            values = self._contributions(outcome)
        elif rule is PayoutRule.WEIGHT and outcome.weights:
            values = [float(w) for w in outcome.weights]
        else:
            values = [1.0] * len(outcome.accepted)
        payout = split_budget(values, self.round_budget_wei, excluded=excluded)
        return dict(zip(outcome.accepted, payout.amounts, strict=True))

    def _contributions(self, outcome: RoundOutcome) -> list[float]:
        if outcome.updates is None or outcome.start_params is None:
            raise ValueError("contribution payouts need the round's individual updates")
        game = CoalitionUtility(
            outcome.start_params,
            outcome.updates,
            torch.tensor(outcome.weights),
            self._utility,
            server_lr=self.spec.algorithm.step_size(),
        )
        c = self.spec.contribution
        config = EvaluatorConfig(
            name=c.evaluator,
            seed=derive_seed(outcome.job_id, outcome.round, "contributions") % 2**31,
            max_permutations=c.max_permutations,
            max_evaluations=c.max_evaluations,
        )
        values: list[float] = evaluate_contributions(game, config).values.tolist()
        self.last_contributions = dict(zip(outcome.accepted, values, strict=True))
        return values
