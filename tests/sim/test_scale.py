"""Simulation at scale: what the fast paths must keep exactly as the slow ones.

- batched validation (a round's update values checked as one tensor operation) rejects
  exactly what per-update validation rejects, each rejection kind, with the same detail;
- exact wire sizes computed without building the message;
- the engine's lookahead (providers' and validators' events run ahead of pending
  training, so a round's training shares fewer, larger batches) changes no event: the
  same messages, bytes, virtual times, accepted and rejected updates as without it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deai.compression.base import IdentityCodec
from deai.errors import InvalidMessage, InvalidUpdate
from deai.job.spec import UpdatePolicy
from deai.learning.params import vector_bytes
from deai.node.base import model_for
from deai.node.messages import (
    FinalModel,
    GossipModel,
    JobResult,
    OpenJob,
    TrainTask,
    Update,
    encode,
)
from deai.node.validation import check_vector, check_vectors, decode_update
from deai.sim.runner import run_scenario
from deai.sim.scenario import parse_scenario
from deai.sim.wire import wire_size

POLICY = UpdatePolicy(max_norm=10.0, max_examples=100)


# ----------------------------------------------------------------- batched validation
def _edge_vectors(dim: int) -> list[torch.Tensor]:
    """Every kind of value an update can have, the norm bound's edges included."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(dim, generator=g)
    unit = base / base.norm()
    out = [torch.zeros(dim), base, unit * 10.0, unit * 9.999999, unit * 10.00001, unit * 1e30]
    for bad in (float("nan"), float("inf"), float("-inf")):
        v = base.clone()
        v[dim // 2] = bad
        out.append(v)
    big = torch.full((dim,), 3.4e38)  # finite, norm overflows to inf
    out += [big, unit * 10.0 * (1 + 2**-23), unit * 10.0 * (1 - 2**-23)]
    return out


def _verdict(e: InvalidUpdate | None) -> tuple[str, str] | None:
    return None if e is None else (e.reason, str(e))


def test_batched_value_checks_equal_per_vector_checks_on_every_row() -> None:
    vectors = _edge_vectors(4810)
    batched = [_verdict(v) for v in check_vectors(torch.stack(vectors), POLICY)]
    single: list[tuple[str, str] | None] = []
    for v in vectors:
        try:
            check_vector(v, POLICY)
            single.append(None)
        except InvalidUpdate as e:
            single.append(_verdict(e))
    assert batched == single
    kinds = {v[0] for v in single if v is not None}
    assert kinds == {"non_finite", "norm_too_large"}  # both value kinds exercised
    assert None in single


def _scenario(n: int = 12, **over: Any) -> Any:
    data: dict[str, Any] = {
        "name": "scale-test",
        "seed": 3,
        "rounds": 3,
        "model": {"name": "mlp", "hidden": [16]},
        "algorithm": {"name": "fedavg", "epochs": 1, "batch_size": 16, "lr": 0.1},
        "simulation": {
            "data": {"dataset": "digits", "partition": "iid", "min_examples": 1},
            "nodes": [{"role": "provider", "count": n}, {"role": "validator", "count": 2}],
        },
    }
    for k, v in over.items():
        if k == "nodes":
            data["simulation"]["nodes"] = v
        elif k == "network":
            data["simulation"]["network"] = v
        else:
            data[k] = v
    return parse_scenario(data)


def _spec() -> Any:
    from deai.sim.runner import plan

    return plan(_scenario(n=6)).spec


def test_the_validator_rejects_what_per_update_validation_rejects_each_kind() -> None:
    """A round where every provider's update fails differently (every kind the validator
    raises in a plaintext job), checked against ``decode_update`` one by one."""
    from deai.node.validator import Validator

    spec = _spec()
    dim = model_for(spec).dim
    p = spec.providers
    unit = torch.ones(dim) / dim**0.5
    limit = spec.policy.max_norm

    def upd(vec: torch.Tensor, **kw: Any) -> Update:
        fields: dict[str, Any] = {
            "job_id": spec.job_id,
            "round": 1,
            "codec": "identity",
            "dim": dim,
            "dtype": "float32",
            "payload": vector_bytes(vec),
            "num_examples": 10,
        }
        fields.update(kw)
        return Update(**fields)

    nan = unit.clone()
    nan[3] = float("nan")
    sent: list[tuple[str, Update]] = [
        (p[0], upd(nan)),  # non_finite
        (p[1], upd(unit * limit * 1.0001)),  # norm_too_large
        (p[2], upd(unit, num_examples=0)),  # bad_example_count
        (p[3], upd(unit, dtype="float16")),  # wrong_dtype
        (p[4], upd(unit, round=7)),  # wrong_round (a later round, not held)
        (p[4], upd(unit, codec="topk")),  # unknown_codec
        ("stranger", upd(unit)),  # unexpected_sender
        (p[3], upd(unit * limit * 0.9999)),  # duplicate (its first was rejected)
        (p[2], upd(unit, dim=dim - 1, payload=vector_bytes(unit[:-1]))),  # dup., short
        (p[0], upd(unit)),  # duplicate (its first fails at close)
        (p[5], upd(unit, payload=b"\x00" * 7)),  # malformed; the last: the round closes
    ]
    # the reference: each update alone through the per-update path
    seen: set[str] = set()
    expected: list[tuple[str, str, str]] = []
    for sender, msg in sent:
        if sender not in p:
            e = InvalidUpdate("unexpected_sender", f"{sender} not drawn")
            expected.append((sender, e.reason, str(e)))
            continue
        if sender in seen:
            e = InvalidUpdate("duplicate", "second update this round")
            expected.append((sender, e.reason, str(e)))
            continue
        if msg.round != 1:
            e = InvalidUpdate("wrong_round", f"round {msg.round}, open round 1")
            expected.append((sender, e.reason, str(e)))
            continue
        seen.add(sender)
        try:
            decode_update(
                msg, round_=1, dim=dim, policy=spec.policy, codecs={"identity": IdentityCodec()}
            )
        except (InvalidUpdate, InvalidMessage) as e:
            reason = e.reason if isinstance(e, InvalidUpdate) else "malformed"
            expected.append((sender, reason, str(e)))
    kinds = {r for _, r, _ in expected}
    assert kinds == {
        "non_finite",
        "norm_too_large",
        "bad_example_count",
        "wrong_dtype",
        "unknown_codec",
        "malformed",
        "duplicate",
        "unexpected_sender",
        "wrong_round",
    }

    class Ctx:
        node_id = spec.validators[0]

        def now(self) -> float:
            return 0.0

        def send(self, to: str, msg: Any) -> None:
            pass

        def call_later(self, delay_s: float, fn: Any) -> None:
            pass

    from deai.sim.runner import plan

    splits = plan(_scenario(n=6)).splits
    v = Validator(spec.validators[0], lambda _s: splits.validation)
    v.attach(Ctx())  # type: ignore[arg-type]
    v.handle(spec.requester, OpenJob(spec.job_id, spec.to_json(), spec.spec_hash()))
    for sender, msg in sent:
        v.handle(sender, msg)
    (out,) = v.outcomes  # every participant answered: the round closed
    got = [(r.sender, r.reason, r.detail) for r in v.rejections]
    assert sorted(got) == sorted(expected)
    assert out.accepted == ()  # every update failed; the round applies nothing


# ------------------------------------------------------------------------ wire sizes
def test_wire_size_is_the_encoded_length_for_every_message_kind() -> None:
    msgs = [
        OpenJob("j\u00e9b", '{"a": "\u4e2d\\"x"}', "h" * 64),
        TrainTask("job", 3, b"\x00\x01" * 1000, "ab"),
        Update("job", 1, "identity", 4, "float32", b"\x00" * 16, 12),
        Update("job", 1, "identity", 4, "float32", b"\x00" * 16, 123456),
        GossipModel("job", 2, b"xyz"),
        FinalModel("job", 2, b"", 7),
        JobResult("job", 5, b"\xff" * 33, "\u00fc"),
    ]
    for m in msgs:
        assert wire_size(m) == len(encode(m))
        assert wire_size(m) == len(encode(m))  # the cached path


# ------------------------------------------------------------------------- lookahead
def _events(s: Any, lookahead: bool) -> tuple[dict[str, Any], torch.Tensor]:
    r = run_scenario(s, lookahead=lookahead)
    m = r.metrics
    keep = ("round", "bytes_up", "bytes_down", "sim_time_s", "accepted", "missing")
    rounds = [{k: x.get(k) for k in keep} for x in m["rounds"]]
    rej = sorted((x["round"], x["at"], x["sender"], x["reason"]) for x in m["rejections"])
    events = {
        "rounds": rounds,
        "rejections": rej,
        "messages": m["messages"],
        "dropped": m["messages_dropped"],
        "bytes": m["bytes_by_kind"],
        "sim_time_s": m["sim_time_s"],
    }
    assert r.final_params is not None
    events["batches"] = m["train_batches"]
    return events, r.final_params


@pytest.mark.parametrize(
    "over",
    [
        {},
        {
            "network": {"dropout": 0.2, "straggler_fraction": 0.3, "straggler_slowdown": 50.0},
            "round_timeout_s": 0.5,
        },
        {
            "nodes": [
                {"role": "provider", "count": 36},
                {"role": "provider", "count": 2, "behaviour": "nan"},
                {"role": "provider", "count": 2, "attack": "sign_flip"},
                {"role": "validator", "count": 2},
            ],
            "algorithm": {
                "name": "fedavg",
                "epochs": 1,
                "batch_size": 16,
                "lr": 0.1,
                "participation": 0.75,
            },
        },
    ],
    ids=["plain", "stragglers-dropout-deadline", "faults-attack-sampling"],
)
def test_lookahead_changes_no_event(over: dict[str, Any]) -> None:
    s = _scenario(n=40, **over)
    with_la, p1 = _events(s, True)
    without, p2 = _events(s, False)
    assert with_la.pop("batches") < without.pop("batches")  # it did batch more
    assert with_la == without
    # only the batch composition differs: float rounding of the batched kernels
    assert torch.allclose(p1, p2, atol=1e-5)


def test_the_straggler_scenario_exercises_deadlines_and_dropouts() -> None:
    s = _scenario(
        network={"dropout": 0.2, "straggler_fraction": 0.3, "straggler_slowdown": 50.0},
        round_timeout_s=0.5,
        n=40,
    )
    m = run_scenario(s).metrics
    assert m["messages_dropped"] > 0
    assert any(r["missing"] for r in m["rounds"])
