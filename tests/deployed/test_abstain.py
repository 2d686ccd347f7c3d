"""Issue #20: a validator restarted after missing a round's updates computed a different
model for that round and, once committed, was slashed for it. Now it abstains: it never
commits a result built from inputs it did not see (only committed members are
slashable), hands driving on and delivers nothing; a restart that missed nothing, or a
sole validator, goes on as before. Real training and strategy; only the transport is
replaced by an in-memory context."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from deai.job.spec import AlgorithmSpec, DataSchema, JobSpec, ModelSpec, Parties
from deai.learning.data import load_dataset
from deai.learning.params import vector_bytes
from deai.node.base import model_for
from deai.node.messages import JobResult, Message, OpenJob, TrainTask, Update
from deai.node.validator import Validator

SPLITS = load_dataset("synthetic", seed=0, n_samples=200, n_features=6, n_classes=3)
PROVIDERS = ("p0", "p1", "p2")


class Ctx:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.t = 0.0
        self.sent: list[tuple[str, Message]] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def now(self) -> float:
        return self.t

    def send(self, to: str, msg: Message) -> None:
        self.sent.append((to, msg))

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.timers.append((self.t + delay_s, fn))

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        done(fn(), None)

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return hashlib.sha256(f"{self.node_id}/{label}".encode()).digest()[:n]

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for _, fn in sorted(timers, key=lambda t: t[0]):
            fn()


def _spec(validators: tuple[str, ...]) -> JobSpec:
    return JobSpec(
        name="abstain",
        rounds=3,
        seed=1,
        round_timeout_s=10.0,
        model=ModelSpec(name="mlp", hidden=[8]),
        algorithm=AlgorithmSpec(steps=2, lr=0.2),
        data=DataSchema(
            input_shape=SPLITS.train.input_shape,
            num_classes=3,
            validation=SPLITS.validation.digest(),
        ),
        parties=Parties(requester="req", providers=PROVIDERS, validators=validators),
    )


def _resumed(spec: JobSpec, after: int) -> tuple[Validator, Ctx]:
    """``v0`` restarted with its journal saying it closed round ``after``."""
    start = model_for(spec).initial_vector()
    v = Validator("v0", lambda _s: SPLITS.validation, resume=lambda _s: (after, start.clone()))
    ctx = Ctx("v0")
    v.attach(ctx)
    v.handle("req", OpenJob(spec.job_id, spec.to_json(), spec.spec_hash()))
    return v, ctx


def _send_updates(v: Validator, spec: JobSpec, round_: int, senders: tuple[str, ...]) -> None:
    dim = model_for(spec).dim
    for i, p in enumerate(senders):
        delta = torch.full((dim,), 0.01 * (i + 1))
        msg = Update(spec.job_id, round_, "identity", dim, "float32", vector_bytes(delta), 10)
        v.handle(p, msg)


def test_a_restart_that_missed_updates_abstains_for_the_rest_of_the_job() -> None:
    spec = _spec(("v0", "v1"))
    v, ctx = _resumed(spec, after=1)  # resumes at round 2 as the coordinator
    assert {m.round for _, m in ctx.sent if isinstance(m, TrainTask)} == {2}
    _send_updates(v, spec, 2, ("p0",))  # p1, p2 sent theirs while it was down
    ctx.fire()  # round 2's deadline: it closes incomplete
    job = v.jobs[spec.job_id]
    assert [o.round for o in v.outcomes] == [2] and v.outcomes[0].abstain
    assert job.abstain and not v.coordinator(job)  # driving handed to v1
    # round 3 is open: only its deadline is pending (an abstaining member sets no
    # takeover timer: it never drives a round with a model it cannot vouch for)
    assert len(ctx.timers) == 1 and v.jobs[spec.job_id].round.round == 3  # type: ignore[union-attr]
    _send_updates(v, spec, 3, PROVIDERS)  # round 3 complete, but built on round 2's model
    assert [(o.round, o.abstain) for o in v.outcomes] == [(2, True), (3, True)]
    assert job.done and not any(isinstance(m, JobResult) for _, m in ctx.sent)


def test_a_restart_that_missed_nothing_settles_and_delivers() -> None:
    spec = _spec(("v0", "v1"))
    v, ctx = _resumed(spec, after=1)
    for r in (2, 3):
        _send_updates(v, spec, r, PROVIDERS)
    assert [(o.round, o.abstain) for o in v.outcomes] == [(2, False), (3, False)]
    assert any(isinstance(m, JobResult) for _, m in ctx.sent)


def test_a_sole_validator_never_abstains() -> None:
    spec = _spec(("v0",))
    v, ctx = _resumed(spec, after=1)
    _send_updates(v, spec, 2, ("p0",))
    ctx.fire()
    assert not v.outcomes[0].abstain and not v.jobs[spec.job_id].abstain
