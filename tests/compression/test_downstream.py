"""Downstream compression (broadcast deltas with the server's error fed back) and codec
specs on the wire, in the real roles and the simulator."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import deai
from deai.compression.base import IdentityCodec
from deai.compression.downstream import Broadcaster, apply_delta
from deai.compression.registry import build_codec
from deai.errors import CodecError, InvalidMessage
from deai.job.spec import CodecSpec, JobSpec
from deai.learning.params import vector_bytes, vector_hash
from deai.node.base import model_for
from deai.node.messages import TrainTask, Update, decode, encode
from deai.node.validator import Validator
from tests.node.test_roles_unit import PROVIDERS, SPLITS, Ctx, _open, _provider, _spec


def test_broadcast_tracks_the_model_and_carries_what_it_dropped() -> None:
    g = torch.Generator().manual_seed(0)
    codec = build_codec("topk", seed=0)  # 1 % of coordinates per round
    params = torch.randn(2000, generator=g)
    b = Broadcaster(codec, torch.zeros(2000))
    gaps = []
    for _ in range(300):  # a fixed target: the residual must shrink, never be lost
        before = b.residual(params).clone()
        enc = b.advance(params)
        assert enc is not None
        sent = codec.decode(enc)
        assert torch.allclose(b.residual(params), before - sent, atol=1e-6)
        gaps.append(float(b.residual(params).norm()))
    assert gaps[-1] < 0.05 * float(params.norm()) and gaps[-1] < gaps[0]


def test_a_broadcast_that_cannot_be_encoded_sends_the_whole_model() -> None:
    b = Broadcaster(build_codec("topk", seed=0), torch.zeros(10))
    bad = torch.full((10,), float("nan"))
    assert b.advance(bad) is None and bool(torch.isnan(b.model).all())


def test_apply_delta_refuses_malformed_payloads() -> None:
    codec = build_codec("topk_quantize", seed=0)
    with pytest.raises(CodecError):
        apply_delta(codec, torch.zeros(100), b"\x01\x02")


# ------------------------------------------------------------------------ roles
def _ds_spec(**kw: Any) -> JobSpec:
    return _spec(codec=CodecSpec(name="topk", ratio=0.1, downstream=True), **kw)


def _coordinator(spec: JobSpec) -> tuple[Validator, Ctx]:
    v = Validator("v0", lambda _s: SPLITS.validation)
    ctx = Ctx("v0")
    v.attach(ctx)
    v.handle("req", _open(spec))
    return v, ctx


def _round(v: Validator, vctx: Ctx, providers: dict[str, Any]) -> dict[str, TrainTask]:
    """Deliver the coordinator's tasks to the providers and their updates back."""
    tasks = {to: m for to, m in vctx.sent if isinstance(m, TrainTask)}
    vctx.sent.clear()
    for name, task in tasks.items():
        p, pctx = providers[name]
        p.handle("v0", decode(encode(task)))
        for _, m in pctx.sent:
            v.handle(name, decode(encode(m)))
        pctx.sent.clear()
    return tasks


def test_providers_rebuild_the_broadcast_and_upload_with_codec_parameters() -> None:
    spec = _ds_spec()
    v, vctx = _coordinator(spec)
    shards = {
        n: _provider(n, SPLITS.train.subset(range(40 * i, 40 * i + 40)), spec)
        for i, n in enumerate(PROVIDERS)
    }
    dim = model_for(spec).dim
    for _ in range(spec.rounds):
        tasks = _round(v, vctx, shards)
        assert all(t.base_round >= 0 and len(t.model) < 4 * dim for t in tasks.values())
    job = v.jobs[spec.job_id]
    assert len(v.outcomes) == spec.rounds and not v.rejections
    for p, _ in shards.values():
        assert not p.refusals and p.held[spec.job_id][1] == spec.rounds
        assert vector_hash(p.held[spec.job_id][0]) == vector_hash(job.broadcast.model)
    (wire,) = {m.codec for m in _uploads(spec, shards)}
    assert wire == 'topk{"ratio":0.1,"value_dtype":"fp32"}'


def _uploads(spec: JobSpec, shards: dict[str, Any]) -> list[Update]:
    out = []
    for p, pctx in shards.values():
        model = p.held[spec.job_id][0]
        p.handle("v0", TrainTask(spec.job_id, 9, vector_bytes(model), vector_hash(model)))
        out += [m for _, m in pctx.sent if isinstance(m, Update)]
        pctx.sent.clear()
    return out


def test_an_update_naming_other_codec_parameters_is_rejected() -> None:
    spec = _ds_spec()
    v, _ = _coordinator(spec)
    dim = model_for(spec).dim
    enc = build_codec("topk", seed=0).encode(torch.full((dim,), 0.01))  # ratio 0.01, not 0.1
    forged = Update(spec.job_id, 1, "topk", dim, "float32", enc.payload, 10)
    v.handle("p0", forged)
    assert [r.reason for r in v.rejections] == ["unknown_codec"]


def test_a_delta_on_a_stale_base_is_refused_and_the_next_task_is_whole() -> None:
    spec = _ds_spec(rounds=3)
    v, vctx = _coordinator(spec)
    shards = {
        n: _provider(n, SPLITS.train.subset(range(40 * i, 40 * i + 40)), spec)
        for i, n in enumerate(PROVIDERS)
    }
    _round(v, vctx, shards)
    stale = shards["p1"][0]
    model = model_for(spec).initial_vector() + 1.0  # p1's copy no longer the broadcast
    stale.held[spec.job_id] = (model, 0)
    _round(v, vctx, shards)  # p1 cannot apply the delta: it refuses, sends nothing
    assert [r.round for r in stale.refusals] == [2]
    assert "does not hold" in stale.refusals[0].reason
    vctx.fire()  # round 2 closes at its deadline without p1
    tasks = _round(v, vctx, shards)  # the coordinator knows p1 did not answer
    assert tasks["p1"].base_round == -1 and tasks["p0"].base_round == 2
    assert stale.held[spec.job_id][1] == 3 and len(stale.refusals) == 1


def test_a_tampered_broadcast_fails_its_hash_check() -> None:
    spec = _ds_spec()
    _, vctx = _coordinator(spec)
    p, pctx = _provider("p0", SPLITS.train.subset(range(40)), spec)
    task = next(m for to, m in vctx.sent if to == "p0")
    forged = TrainTask(task.job_id, 1, task.model, "0" * 64, task.codec, task.base_round)
    with pytest.raises(InvalidMessage):
        p.handle("v0", forged)
    assert pctx.sent == []


def test_a_whole_model_must_be_raw() -> None:
    spec = _ds_spec()
    p, _ = _provider("p0", SPLITS.train.subset(range(40)), spec)
    m = model_for(spec).initial_vector()
    with pytest.raises(InvalidMessage):
        p.handle("v0", TrainTask(spec.job_id, 1, vector_bytes(m), vector_hash(m), "topk"))


# -------------------------------------------------------------------- simulator
def _sim(downstream: bool, participation: float = 1.0) -> deai.SimulationResult:
    spec = deai.JobSpec(
        name="downstream",
        seed=0,
        rounds=30,
        model=deai.ModelSpec(name="mlp", hidden=[16]),
        algorithm=deai.AlgorithmSpec(steps=8, batch_size=16, lr=0.2, participation=participation),
        codec=deai.CodecSpec(name="topk", ratio=0.05, downstream=downstream),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(dataset="digits", partition="iid"),
        nodes=[deai.NodeGroup(role="provider", count=6), deai.NodeGroup(role="validator")],
    )
    return deai.simulate(spec, world)


def test_downstream_compression_cuts_download_bytes_and_still_learns() -> None:
    plain, ds = _sim(False), _sim(True)
    assert ds.bytes_down < plain.bytes_down / 4  # whole encodings, headers included
    assert ds.bytes_up == plain.bytes_up or abs(ds.bytes_up - plain.bytes_up) < plain.bytes_up / 50
    assert ds.final_accuracy > 0.8 and ds.final_accuracy > plain.final_accuracy - 0.1
    assert not [n for n in ds.notes if "refus" in n.lower()]


def test_partial_participation_gets_whole_models_when_a_base_is_not_proven() -> None:
    res = _sim(True, participation=0.5)
    assert not [n for n in res.notes if "refus" in n.lower()]
    assert res.final_accuracy > 0.7


def test_whole_task_encoding_is_what_the_simulator_counts() -> None:
    m = torch.zeros(10)
    whole = TrainTask("j", 1, vector_bytes(m), vector_hash(m))
    assert len(encode(whole)) > len(vector_bytes(m)) + 40  # the header is counted too
    assert IdentityCodec().spec.to_wire() == whole.codec


def test_a_delta_on_a_wrong_model_of_the_right_round_fails_the_hash_check() -> None:
    spec = _ds_spec()
    _, vctx = _coordinator(spec)
    p, pctx = _provider("p0", SPLITS.train.subset(range(40)), spec)
    wrong = model_for(spec).initial_vector() + 0.5
    p.held[spec.job_id] = (wrong, 0)  # claims round 0 but is not the initial model
    task = next(m for to, m in vctx.sent if to == "p0")
    with pytest.raises(InvalidMessage, match="hash"):
        p.handle("v0", task)
    assert pctx.sent == []
