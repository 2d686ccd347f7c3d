"""What a node reports about its jobs: every round's accuracy on the requester's
validation data (:class:`RoundLog`, a validator observer) and JSON views of rounds for
``/v1/status`` and ``/v1/jobs/{id}`` (settlement duties: :func:`deai.node.settlement.duty_json`,
one shape for reports and the journal)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from deai.node.hooks import RoundOutcome
from deai.node.validator import Validator

if TYPE_CHECKING:
    from deai.node.node import Node

log = logging.getLogger("deai.node")


class RoundLog:
    """Validator observer: every round's accuracy and loss on the requester's validation
    data, computed in the training worker (off the loop)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.rounds: dict[str, dict[int, dict[str, float]]] = {}

    def on_round(self, outcome: RoundOutcome) -> None:
        prep = self.node.prepared.get(outcome.job_id)
        validator = self.node.role(Validator)
        if prep is None or prep.validation is None or not isinstance(validator, Validator):
            return
        job = validator.jobs.get(outcome.job_id)
        if job is None:
            return
        params = outcome.require_params()
        self.node.journal_round(job.spec, outcome.round, params)
        model, data = job.model, prep.validation
        from deai.learning.train import evaluate

        def done(result: tuple[float, float]) -> None:
            loss, acc = result
            self.rounds.setdefault(outcome.job_id, {})[outcome.round] = {
                "accuracy": acc,
                "loss": loss,
            }
            log.info("job %s round %d: accuracy %.4f", outcome.job_id, outcome.round, acc)

        self.node.runtime.compute(lambda: evaluate(model, params, data), done)

    def on_gossip(self, node_id: str, round_: int, params: Any, time_s: float) -> None:
        return None

    def on_rejection(self, node_id: str, rejection: Any) -> None:
        return None


def outcome_json(o: RoundOutcome) -> dict[str, Any]:
    return {
        "job_id": o.job_id,
        "round": o.round,
        "model_hash": o.model_hash,
        "participants": list(o.participants),
        "accepted": list(o.accepted),
        "excluded": list(o.excluded),
        "missing": list(o.missing),
        "rejections": [r.__dict__ for r in o.rejections],
        "weights": list(o.weights),
        "applied": o.applied,
        "note": o.note,
        "epsilon": o.epsilon,
        "started_s": o.started_s,
        "closed_s": o.closed_s,
    }
