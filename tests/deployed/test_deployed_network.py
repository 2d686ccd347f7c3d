"""A deployed network in one process: the real node, HTTP API, signing and runtime, over
ASGI transport. Checks a job end to end and the fault rules (garbage, NaN, stall)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from deployed_kit import build_net, job_toml, wait_for

from deai.job.spec import JobSpec
from deai.learning.data import DatasetName, load_dataset
from deai.learning.train import evaluate
from deai.node.daemon import Node
from deai.node.roles import Requester, Validator, model_for


def _validator(node: Node) -> Validator:
    v = node.role(Validator)
    assert isinstance(v, Validator)
    return v


async def _run_job(tmp: Path, faults: dict[int, dict[str, object]] | None = None, **kw: object):
    net = await build_net(tmp, 3, faults)
    try:
        desk = net.nodes[0].desk
        assert desk is not None
        job = await desk.submit(job_toml(net, **kw))  # type: ignore[arg-type]
        req = desk.jobs[job["job_id"]].role
        assert isinstance(req, Requester)
        assert await wait_for(lambda: req.result is not None, 150)
        return net, job, req
    finally:
        await net.close()


def test_job_end_to_end_improves_model(tmp_path: Path) -> None:
    net, job, req = asyncio.run(_run_job(tmp_path, rounds=2))
    spec: JobSpec = req.spec
    test = load_dataset(DatasetName.DIGITS, seed=0).test
    model = model_for(spec)
    _, acc0 = evaluate(model, model.initial_vector(), test)
    assert req.result is not None
    _, acc = evaluate(model, req.result, test)
    assert acc > acc0 + 0.3, (acc0, acc)
    outcomes = _validator(net.nodes[1]).outcomes
    assert [o.round for o in outcomes] == [1, 2]
    assert all(len(o.accepted) == 3 and not o.missing for o in outcomes)
    # the final model is served by hash from the requester's store
    assert req.result_hash is not None and net.nodes[0].store.has(req.result_hash)
    status = asyncio.run(net.nodes[0].job_status(job["job_id"]))
    assert status is not None and status["done"] and status["model_hash"] == req.result_hash


def test_nan_provider_rejected_and_round_goes_on(tmp_path: Path) -> None:
    net, _, req = asyncio.run(_run_job(tmp_path, {2: {"behaviour": "nan"}}, rounds=2))
    bad = net.nodes[2].address
    v = _validator(net.nodes[1])
    for o in v.outcomes:
        assert bad not in o.accepted and len(o.accepted) == 2
        assert [r.reason for r in o.rejections if r.sender == bad] == ["non_finite"]
    rt = net.nodes[1].runtime
    assert rt.strikes[bad] >= 2  # at least one offence per round
    # only the offender is struck, and every refusal as "rejected" is one of its strikes
    # (under load its sender may deliver the NaN update again under a new round's task)
    assert {s for s, n in rt.strikes.items() if n} == {bad}
    assert rt.metrics.refused["rejected"] == rt.strikes[bad]
    assert req.result is not None and bool(req.result.isfinite().all())


def test_stalled_provider_excluded_at_deadline(tmp_path: Path) -> None:
    net, _, req = asyncio.run(
        _run_job(tmp_path, {3: {"train_delay_s": 60.0}}, rounds=1, timeout_s=6.0)
    )
    o = _validator(net.nodes[1]).outcomes[0]
    assert o.missing == (net.nodes[3].address,)
    assert len(o.accepted) == 2
    assert o.closed_s - o.started_s >= 5.9
    assert req.result is not None
