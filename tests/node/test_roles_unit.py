"""Provider and Validator on their own, driven message by message through a small test
context (real training, real codecs, real strategy; only the transport is replaced)."""

from __future__ import annotations

import gc
import hashlib
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch

from deai.job.spec import (
    AggregationSpec,
    AlgorithmSpec,
    DataSchema,
    JobSpec,
    ModelSpec,
    Parties,
    PrivacySpec,
    SettlementSpec,
)
from deai.learning.data import Dataset, load_dataset
from deai.learning.params import vector_bytes, vector_hash
from deai.learning.train import train_local
from deai.node.base import model_for
from deai.node.faults import Fault, FaultyBehaviour
from deai.node.messages import FinalModel, Message, OpenJob, TrainTask, Update
from deai.node.provider import Provider
from deai.node.validator import JobPending, Validator

SPLITS = load_dataset("synthetic", seed=0, n_samples=400, n_features=6, n_classes=3)
PROVIDERS = ("p0", "p1", "p2", "p3", "p4")


class Ctx:
    """The runtime side, in memory: messages are collected, timers fired by hand."""

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

    def train(self, model: Any, request: Any, done: Callable[[Any], None]) -> None:
        done(train_local(model, [request])[0])

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        done(fn(), None)

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return hashlib.sha256(f"test-secret/{self.node_id}/{label}".encode()).digest()[:n]

    def sign(self, data: bytes) -> bytes:
        return b""

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        return False

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for _, fn in sorted(timers, key=lambda t: t[0]):
            fn()


def _spec(**kw: Any) -> JobSpec:
    base = {
        "name": "unit",
        "rounds": 2,
        "seed": 3,
        "round_timeout_s": 10.0,
        "model": ModelSpec(name="mlp", hidden=[8]),
        "algorithm": AlgorithmSpec(steps=2, lr=0.2),
        "data": DataSchema(
            input_shape=SPLITS.train.input_shape,
            num_classes=3,
            validation=SPLITS.validation.digest(),
        ),
        "parties": Parties(requester="req", providers=PROVIDERS, validators=("v0",)),
    }
    return JobSpec(**{**base, **kw})


def _open(spec: JobSpec) -> OpenJob:
    return OpenJob(spec.job_id, spec.to_json(), spec.spec_hash())


def _validator(spec: JobSpec, **kw: Any) -> tuple[Validator, Ctx]:
    v = Validator("v0", lambda _s: SPLITS.validation, **kw)
    ctx = Ctx("v0")
    v.attach(ctx)
    v.handle("req", _open(spec))
    return v, ctx


def _update(spec: JobSpec, round_: int, vec: torch.Tensor, n: int = 10) -> Update:
    return Update(spec.job_id, round_, "identity", vec.shape[0], "float32", vector_bytes(vec), n)


def _provider(name: str, data: Dataset, spec: JobSpec, **kw: Any) -> tuple[Provider, Ctx]:
    p = Provider(name, data, **kw)
    ctx = Ctx(name)
    p.attach(ctx)
    p.handle("req", _open(spec))
    return p, ctx


# ------------------------------------------------------------------------- validator
def test_validator_sends_tasks_to_the_drawn_and_closes_when_all_answered() -> None:
    spec = _spec()
    v, ctx = _validator(spec)
    tasks = [(to, m) for to, m in ctx.sent if isinstance(m, TrainTask)]
    assert [to for to, _ in tasks] == list(PROVIDERS)
    dim = model_for(spec).dim
    for p in PROVIDERS:
        v.handle(p, _update(spec, 1, torch.full((dim,), 0.01)))
    (out,) = v.outcomes
    assert out.accepted == PROVIDERS and out.applied and out.missing == ()
    assert v.jobs[spec.job_id].round.round == 2  # type: ignore[union-attr]


def test_an_update_that_overtakes_the_nodes_preparation_is_held_not_dropped() -> None:
    """Found on a deployed cluster (benchmarks/deployed_round.py, 1 of 20 jobs): a
    provider's update reached a validator while it was still looking up the job's chain
    escrow (``JobPending``); it was dropped, the round closed incomplete at the deadline and
    the member abstained, holding the round for its whole commit window."""
    spec = _spec()
    ready = False

    def data(_spec: JobSpec) -> Dataset:
        if not ready:
            raise JobPending(_spec.job_id)
        return SPLITS.validation

    v = Validator("v0", data)
    ctx = Ctx("v0")
    v.attach(ctx)
    v.handle("req", _open(spec))  # pending: the node is still preparing the job
    assert spec.job_id not in v.jobs
    dim = model_for(spec).dim
    for p in PROVIDERS:  # the tasks came from a faster member; the updates come here
        v.handle(p, _update(spec, 1, torch.full((dim,), 0.01)))
    v.handle("stranger", _update(spec, 1, torch.full((dim,), 9.0)))  # not a provider
    ready = True
    v.handle("req", _open(spec))  # the node's preparation hands the OpenJob over again
    (out,) = v.outcomes
    assert out.accepted == PROVIDERS and out.missing == ()
    assert v.pending == {}


class _Seen:
    """An observer that records what each round showed it."""

    def __init__(self) -> None:
        self.stacks: list[torch.Tensor | None] = []

    def on_round(self, outcome: Any) -> None:
        self.stacks.append(outcome.updates)


@pytest.mark.parametrize("keep", [False, True])
def test_the_update_stack_reaches_the_observer_and_is_kept_only_if_asked(keep: bool) -> None:
    spec = _spec()
    seen = _Seen()
    v, _ = _validator(spec, observer=seen, keep_updates=keep)
    dim = model_for(spec).dim
    for p in PROVIDERS:
        v.handle(p, _update(spec, 1, torch.full((dim,), 0.01)))
    (stack,) = seen.stacks
    assert stack is not None and stack.shape == (len(PROVIDERS), dim)
    (out,) = v.outcomes
    assert (out.updates is not None) is keep  # memory does not grow with the rounds
    assert (out.params is not None and out.start_params is not None) is keep


def test_a_pending_deadline_does_not_keep_a_closed_rounds_updates() -> None:
    # the round's deadline timer outlives the round (virtual time runs ahead in the
    # simulator): holding the round's state kept every update of every round alive
    spec = _spec()
    v, ctx = _validator(spec)
    first = weakref.ref(v.jobs[spec.job_id].round)  # type: ignore[arg-type]
    timers = list(ctx.timers)  # round 1's
    dim = model_for(spec).dim
    for p in PROVIDERS:
        v.handle(p, _update(spec, 1, torch.full((dim,), 0.01)))
    assert len(v.outcomes) == 1 and timers  # closed; its deadline still pending
    gc.collect()
    assert first() is None
    for _, fire in timers:  # a stale deadline changes nothing
        fire()
    assert len(v.outcomes) == 1


def test_a_rejected_update_is_recorded_exactly_once() -> None:
    spec = _spec()
    v, _ = _validator(spec)
    dim = model_for(spec).dim
    v.handle("p0", _update(spec, 1, torch.full((dim,), float("nan"))))
    v.handle("p0", _update(spec, 1, torch.zeros(dim)))  # a second update: a duplicate
    # values are checked at close, all the round's updates at once (check_vectors)
    assert [r.reason for r in v.rejections] == ["duplicate"]
    for p in PROVIDERS[1:]:
        v.handle(p, _update(spec, 1, torch.zeros(dim)))
    (out,) = v.outcomes
    assert [r.reason for r in out.rejections] == ["duplicate", "non_finite"]
    assert [r.reason for r in v.rejections] == ["duplicate", "non_finite"]
    assert "p0" not in out.accepted


def test_a_duplicate_final_model_is_recorded_once() -> None:
    # the old validator appended D-PSGD rejections to its own list twice
    spec = _spec(algorithm=AlgorithmSpec(name="dpsgd", steps=1))
    v, _ = _validator(spec)
    vec = model_for(spec).initial_vector()
    msg = FinalModel(spec.job_id, 2, vector_bytes(vec), 10)
    v.handle("p0", msg)
    v.handle("p0", msg)
    assert [r.reason for r in v.rejections] == ["duplicate"]


def test_too_few_updates_for_the_rule_apply_no_update_and_the_job_goes_on() -> None:
    # krum with f = 1 needs 5 rows; after two rejections only 3 remain
    spec = _spec(aggregation=AggregationSpec(rule="krum", f=1))
    v, ctx = _validator(spec)
    dim = model_for(spec).dim
    v.handle("p0", _update(spec, 1, torch.full((dim,), float("inf"))))
    v.handle("p1", _update(spec, 1, torch.full((dim,), 1e9)))
    for p in PROVIDERS[2:]:
        v.handle(p, _update(spec, 1, torch.full((dim,), 0.01)))
    (out,) = v.outcomes
    assert not out.applied and "krum could not run on 3 updates" in out.note
    assert out.model_hash == vector_hash(model_for(spec).initial_vector())
    assert v.jobs[spec.job_id].round.round == 2  # type: ignore[union-attr]
    ctx.fire()  # round 2 runs into its deadline: no update either, and the job ends
    assert len(v.outcomes) == 2 and v.jobs[spec.job_id].done


def test_a_secure_job_never_accepts_a_plaintext_update() -> None:
    spec = _spec(privacy=PrivacySpec(clip=1.0, noise_multiplier=0.5, secure_aggregation=True))
    v, _ = _validator(spec)
    dim = model_for(spec).dim
    v.handle("p0", _update(spec, 1, torch.zeros(dim)))
    assert [r.reason for r in v.rejections] == ["plaintext_in_secure_job"]
    assert v.outcomes == []


def test_jobs_the_node_cannot_honour_are_refused_with_a_reason() -> None:
    settled = _spec(settlement=SettlementSpec(committee=1))
    v, ctx = _validator(settled)
    assert v.jobs == {} and ctx.sent == []
    assert "settled on chain and this node has no chain" in v.refusals[0].reason
    other = SPLITS.validation.subset(range(5))
    v2 = Validator("v0", lambda _s: other)
    v2.attach(Ctx("v0"))
    v2.handle("req", _open(_spec()))
    assert "does not match the spec's digest" in v2.refusals[0].reason


def test_dp_updates_above_what_clip_plus_noise_reach_are_rejected_not_reclipped() -> None:
    spec = _spec(privacy=PrivacySpec(clip=1.0, noise_multiplier=0.0))
    v, _ = _validator(spec)
    dim = model_for(spec).dim
    v.handle("p0", _update(spec, 1, torch.full((dim,), 1.0)))  # norm sqrt(dim) > clip
    _close_round_one(v, spec)
    assert [r.reason for r in v.rejections] == ["norm_too_large"]


def _close_round_one(v: Validator, spec: JobSpec) -> None:
    """The other providers answer with zero updates: round 1 closes, and the values of all
    its updates are checked then, at once."""
    dim = model_for(spec).dim
    for p in PROVIDERS[1:]:
        v.handle(p, _update(spec, 1, torch.zeros(dim)))


# -------------------------------------------------------------------------- provider
def test_provider_trains_a_round_once_from_any_committee_member() -> None:
    """Failover (#20): a task may come from any member of the job's committee (the
    coordinator or its successor); a provider trains each round once, and a stranger's
    task is ignored."""
    spec = _spec(parties=Parties(requester="req", providers=PROVIDERS, validators=("v0", "v1")))
    p, ctx = _provider("p0", SPLITS.train.subset(range(40)), spec)
    model = model_for(spec).initial_vector()
    task = TrainTask(spec.job_id, 1, vector_bytes(model), vector_hash(model))
    p.handle("mallory", task)  # not on the committee: ignored
    assert ctx.sent == []
    p.handle("v1", task)  # the successor drives the round
    assert sorted(to for to, m in ctx.sent if isinstance(m, Update)) == ["v0", "v1"]
    p.handle("v0", task)  # the same round again (the coordinator came back): trained once
    assert len([m for _, m in ctx.sent if isinstance(m, Update)]) == 2


def test_a_silent_round_is_taken_over_by_the_next_member() -> None:
    spec = _spec(parties=Parties(requester="req", providers=PROVIDERS, validators=("v0", "v1")))
    v = Validator("v1", lambda _s: SPLITS.validation)
    ctx = Ctx("v1")
    v.attach(ctx)
    v.handle("req", _open(spec))
    assert ctx.sent == []  # not the coordinator: it waits
    job = v.jobs[spec.job_id]
    when, check = min(ctx.timers, key=lambda t: t[0])
    assert when == pytest.approx(v.takeover_s(job))
    ctx.t = when
    check()  # nobody sent an update: v1 takes the round over
    assert sorted(to for to, m in ctx.sent if isinstance(m, TrainTask)) == sorted(PROVIDERS)
    assert v.coordinator(job)


def test_a_driven_round_is_not_taken_over() -> None:
    spec = _spec(parties=Parties(requester="req", providers=PROVIDERS, validators=("v0", "v1")))
    v = Validator("v1", lambda _s: SPLITS.validation)
    ctx = Ctx("v1")
    v.attach(ctx)
    v.handle("req", _open(spec))
    v.handle("p0", _update(spec, 1, torch.zeros(model_for(spec).dim)))
    for _, fn in sorted(ctx.timers, key=lambda t: t[0])[:1]:
        fn()
    assert not any(isinstance(m, TrainTask) for _, m in ctx.sent)


def test_provider_refuses_a_job_its_data_does_not_fit() -> None:
    spec = _spec(data=DataSchema(input_shape=(7,), num_classes=3))
    p, _ = _provider("p0", SPLITS.train.subset(range(40)), spec)
    assert p.jobs == {} and "shape (7,)" in p.refusals[0].reason


def test_a_secure_job_without_a_secagg_client_is_refused_never_sent_in_the_clear() -> None:
    spec = _spec(privacy=PrivacySpec(clip=1.0, noise_multiplier=0.5, secure_aggregation=True))
    p, ctx = _provider("p0", SPLITS.train.subset(range(40)), spec)
    assert p.jobs == {} and "no SecAgg client" in p.refusals[0].reason
    model = model_for(spec).initial_vector()
    p.handle("v0", TrainTask(spec.job_id, 1, vector_bytes(model), vector_hash(model)))
    assert ctx.sent == []


@pytest.mark.parametrize("fault", list(Fault))
def test_faulty_providers_are_rejected_by_the_validator(fault: Fault) -> None:
    spec = _spec()
    p, pctx = _provider(
        "p0", SPLITS.train.subset(range(40)), spec, behaviour=FaultyBehaviour(fault)
    )
    model = model_for(spec).initial_vector()
    p.handle("v0", TrainTask(spec.job_id, 1, vector_bytes(model), vector_hash(model)))
    v, _ = _validator(spec)
    for _, msg in pctx.sent:
        v.handle("p0", msg)
    _close_round_one(v, spec)
    assert len(v.rejections) == 1 and v.rejections[0].sender == "p0"
