"""A validator's payout vector for a round, by the payout rule the job spec names.

* ``contribution``: the spec's evaluator (Shapley estimators, leave-one-out, proxies) on
  the requester's validation data (``deai.incentives``), under these rules, each of which
  the report states when it applied:

  1. *one player per near-duplicate*: updates with cosine >= ``DUPLICATE_COSINE`` are one
     player whose value is split among them (a Sybil copy or a copier gains nothing);
  2. *coverage counts*: the utility is the class-balanced validation loss, so a provider
     that adds a class the others lack is paid when the model learns it;
  3. *the game is the applied aggregate*: the rows the aggregator excluded are not players
     (the model never saw them) and are valued 0; the rest weigh in the game as the
     aggregator weighed them (under the default rule claimed example counts capped at
     ``weight_cap`` times the median, as it caps them), so splitting one dataset across
     identities splits its weight instead of multiplying its vote, and an inflated claim
     buys at most the cap, as it does in the model;
  4. *excluded or boosted*: under the default rule every player plays in the game clipped
     to the rule's norm bound (``norm_multiplier`` times the players' median norm), as the
     model applied it, so a boost buys no value; updates the aggregator excluded, and updates
     whose norm exceeds both the bound and ``OVERSIZE`` times the median norm (a
     model-replacement boost is ``n / eta``, far above; an honest update with more or newer
     data than the median one is not, and until this rule was changed every update above
     the bound, with the default ``norm_multiplier = 1`` half of the honest ones, earned
     nothing), earn nothing that round;
  5. *no pay on a negative balance*: a provider is paid for a round only while the sum of
     its measured contributions over the job so far is positive, so a harmful provider
     cannot earn on a lucky round (values are still clipped at 0 per round: a payout is
     never negative);
  6. *against the step*: an update whose cosine with the round's applied server step
     (new parameters minus the round's start) is not positive worked against the model
     and earns nothing that round (FLTrust's ReLU-cosine gate, applied to pay): a sign
     flipper shrinks an overshooting step and the coalition game can credit that as a
     gain, the direction cannot;
  7. *track record*: a provider whose updates were excluded, oversized or against the
     step in at least half of its rounds so far is not paid (a sign flipper that slips
     past the exclusion in a late round, when every update is mostly noise, does not
     earn there).

* ``weight``: in proportion to aggregation weight (capped claimed example counts);
* ``equal``: equal shares.

Under every rule rejected updates earn nothing, and a round that applied no update pays
nobody (the round's budget stays in escrow and is refunded). The split is exact in integer
wei (``deai.incentives.rewards.split_budget``).

Every honest validator computes the same vector: the game is built from the round's
accepted updates in draw order, the evaluator's seed is derived from (job, round), and
evaluation runs on the same validation data with deterministic kernels.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from deai.aggregation.default import DefaultConfig
from deai.aggregation.norm_bounding import median_norm
from deai.incentives.evaluators import EvaluatorConfig, evaluate_contributions
from deai.incentives.game import CoalitionUtility
from deai.incentives.rewards import split_budget
from deai.incentives.valuation import applied_values, balanced_utility
from deai.job.spec import JobSpec, PayoutRule, derive_seed
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.learning.train import evaluate
from deai.node.hooks import RoundOutcome

DUPLICATE_COSINE = 0.99  # updates at least this alike are one player (rule 1)
OVERSIZE = 3.0  # rule 4: above the norm bound and this many times the median norm: nothing

PAYOUT_RULES = {
    PayoutRule.CONTRIBUTION: "split by measured contribution (the job's evaluator) to the "
    "class-balanced validation loss; near-duplicate updates (cosine >= 0.99) are one player "
    "sharing its value (valued as its first member alone); the game is the applied "
    "aggregate: excluded updates are no players, the rest weigh as the aggregator weighed "
    "them (capped claimed example counts), each clipped to its norm bound, and a coalition "
    "moves the model by its members' share of the round's weight; updates the "
    f"aggregator excluded or whose norm exceeds its norm bound and {OVERSIZE:g}x the median "
    "norm earn nothing that round; "
    "updates pointing against the round's applied step (cosine <= 0) earn nothing that round; "
    "a provider whose summed contribution over the job is not positive, or that was "
    "excluded, oversized or against the step in at least half of its rounds, is not paid; "
    "per-round values are clipped at 0",
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
        self.totals: dict[str, float] = {}  # summed contribution per provider (rule 5)
        self.seen: dict[str, int] = {}  # rounds each provider's update was accepted (rule 6)
        self.strikes: dict[str, int] = {}  # of which excluded or oversized (rule 6)
        self.applied: dict[str, int] = {}  # how often each rule zeroed a payout, for the report
        if validation.y.dim() == 1:  # class labels: the class-balanced utility
            self._utility = balanced_utility(model.forward, validation.x, validation.y)
        else:  # e.g. next-token windows: minus the validation loss

            def loss_utility(params: Tensor) -> float:
                return -evaluate(self.model, params, self.validation)[0]

            self._utility = loss_utility

    def __call__(self, outcome: RoundOutcome) -> dict[str, int]:
        """Wei per provider for this round (every accepted sender appears, maybe with 0)."""
        self.last_contributions = {}
        if not outcome.applied or not outcome.accepted:
            return {}
        excluded = [i for i, s in enumerate(outcome.accepted) if s in set(outcome.excluded)]
        rule = self.spec.contribution.payout
        if rule is PayoutRule.CONTRIBUTION:
            values = self._contributions(outcome, excluded)
            excluded = self._forfeits(outcome, values, excluded)
        elif rule is PayoutRule.WEIGHT and outcome.weights:
            values = [float(w) for w in outcome.weights]
        else:
            values = [1.0] * len(outcome.accepted)
        payout = split_budget(values, self.round_budget_wei, excluded=excluded)
        return dict(zip(outcome.accepted, payout.amounts, strict=True))

    def _count(self, rule: str, k: int) -> None:
        if k:
            self.applied[rule] = self.applied.get(rule, 0) + k

    def _forfeits(
        self, outcome: RoundOutcome, values: list[float], excluded: list[int]
    ) -> list[int]:
        """Rules 4 to 7: the indices that earn nothing this round."""
        out = set(excluded)
        self._count("excluded by the aggregator", len(out))
        assert outcome.updates is not None
        norms = torch.linalg.vector_norm(outcome.updates.to(torch.float64), dim=1)
        bound = self._bound(outcome.updates)
        if bound is not None:
            top = max(bound, OVERSIZE * median_norm(outcome.updates)) * (1 + 1e-9)
            big = {i for i in range(len(values)) if float(norms[i]) > top}
            self._count(f"norm above the bound and {OVERSIZE:g}x the median", len(big - out))
            out |= big
        if outcome.start_params is not None:  # rule 6: against the applied step
            step = (outcome.require_params() - outcome.start_params).to(torch.float64)
            dots = outcome.updates.to(torch.float64) @ step
            against = {i for i in range(len(values)) if float(dots[i]) <= 0.0}
            self._count("against the applied step", len(against - out))
            out |= against
        for i, sender in enumerate(outcome.accepted):
            self.totals[sender] = self.totals.get(sender, 0.0) + values[i]
            self.seen[sender] = self.seen.get(sender, 0) + 1
            self.strikes[sender] = self.strikes.get(sender, 0) + (i in out)
        broke = {i for i, s in enumerate(outcome.accepted) if self.totals[s] <= 0.0}
        self._count("summed contribution not positive", len(broke - out))
        record = {i for i, s in enumerate(outcome.accepted) if 2 * self.strikes[s] >= self.seen[s]}
        self._count("excluded in at least half of its rounds", len(record - out - broke))
        return sorted(out | broke | record)

    def _weights(self, outcome: RoundOutcome) -> Tensor:
        """Rule 3: the weights the aggregator used (the claims; under the default rule
        :meth:`_cap` caps them in the game)."""
        return torch.tensor(outcome.weights, dtype=torch.float64)

    def _clip(self) -> float | None:
        """The default rule's ``norm_multiplier``: it clips every row to that times the
        median row norm (None for other rules)."""
        if self.spec.aggregation.rule != "default":
            return None
        params = self.spec.aggregation.params
        return float(params.get("norm_multiplier", DefaultConfig.norm_multiplier))

    def _bound(self, updates: Tensor) -> float | None:
        """The default rule's norm bound this round, as the aggregator clips (None for
        other rules)."""
        clip = self._clip()
        return None if clip is None else clip * median_norm(updates)

    def _cap(self) -> float | None:
        """The default rule's ``weight_cap``: the game caps the players' claims at it times
        their median, as the aggregator caps the rows' (None for other rules)."""
        if self.spec.aggregation.rule != "default":
            return None
        return float(self.spec.aggregation.params.get("weight_cap", DefaultConfig.weight_cap))

    def _contributions(self, outcome: RoundOutcome, excluded: list[int]) -> list[float]:
        if outcome.updates is None or outcome.start_params is None:
            raise ValueError("contribution payouts need the round's individual updates")
        start = outcome.start_params
        lr = self.spec.algorithm.step_size()

        def game_for(updates: Tensor, weights: Tensor) -> CoalitionUtility:
            return CoalitionUtility(start, updates, weights, self._utility, server_lr=lr)

        c = self.spec.contribution
        config = EvaluatorConfig(
            name=c.evaluator,
            seed=derive_seed(outcome.job_id, outcome.round, "contributions") % 2**31,
            max_permutations=c.max_permutations,
        )

        def values_of(game: CoalitionUtility) -> Tensor:
            budget = c.evaluations_for(game.n)  # the players left after rules 1 and 3
            return evaluate_contributions(game, replace(config, max_evaluations=budget)).values

        tensor, _, merged = applied_values(
            game_for,
            outcome.updates,
            self._weights(outcome),
            excluded,
            values_of,
            DUPLICATE_COSINE,
            self._cap(),
            self._clip(),
        )
        self._count("near-duplicates valued as one player", merged)
        values: list[float] = tensor.tolist()
        self.last_contributions = dict(zip(outcome.accepted, values, strict=True))
        return values
