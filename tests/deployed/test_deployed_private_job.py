"""A deployed job asks for what a simulated one can (issue #12, item 3): DP with secure
aggregation, a codec and aggregator parameters, carried by the job spec alone. Real nodes,
HTTP API, signing and SecAgg roles over ASGI transport (no sockets, no chain)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from deployed_kit import build_net, job_toml, wait_for

from deai.learning.data import DatasetName, load_dataset
from deai.learning.train import evaluate
from deai.node.daemon import Node
from deai.node.roles import Requester, Validator, model_for


def _validator(node: Node) -> Validator:
    v = node.role(Validator)
    assert isinstance(v, Validator)
    return v


PRIVATE = """
[privacy]
clip = 1.0
noise_multiplier = 0.3
epsilon = 50.0
secure_aggregation = true
threshold = 0.6
"""

CODEC_AND_RULE = """
[aggregation]
rule = "trimmed_mean"
trim_fraction = 0.25

[codec]
name = "quantize"
bits = 8
"""


async def _run(tmp: Path, extra: str, n: int = 4, rounds: int = 2):
    net = await build_net(tmp, n)
    try:
        desk = net.nodes[0].desk
        assert desk is not None
        job = await desk.submit(job_toml(net, rounds=rounds) + extra)
        req = desk.jobs[job["job_id"]].role
        assert isinstance(req, Requester)
        assert await wait_for(lambda: req.result is not None, 150)
        return net, job, req
    finally:
        await net.close()


def test_deployed_dp_job_with_secure_aggregation_never_shows_an_update(tmp_path: Path) -> None:
    net, _, req = asyncio.run(_run(tmp_path, PRIVATE))
    outcomes = _validator(net.nodes[1]).outcomes
    assert [o.round for o in outcomes] == [1, 2]
    for o in outcomes:
        assert o.secure and o.updates is None  # the validator saw only the secure sum
        assert len(o.accepted) == 4 and o.applied
        assert o.privacy is not None and o.privacy.epsilon_public_max > 0
    # no provider ever sent a plaintext update
    assert all(n.runtime.metrics.sent.get("update", 0) == 0 for n in net.nodes[2:])
    eps = [o.epsilon for o in outcomes]
    assert eps[0] is not None and eps[1] is not None and 0 < eps[0] < eps[1] <= 50.0
    assert req.result is not None and bool(req.result.isfinite().all())


def test_deployed_job_carries_its_codec_and_rule_parameters(tmp_path: Path) -> None:
    net, _, req = asyncio.run(_run(tmp_path, CODEC_AND_RULE, rounds=2))
    spec = req.spec
    assert spec.codec.name == "quantize" and spec.aggregation.rule == "trimmed_mean"
    v = _validator(net.nodes[1])
    assert [o.round for o in v.outcomes] == [1, 2]
    test = load_dataset(DatasetName.DIGITS, seed=0).test
    model = model_for(spec)
    _, acc0 = evaluate(model, model.initial_vector(), test)
    assert req.result is not None
    _, acc = evaluate(model, req.result, test)
    assert acc > acc0 + 0.3, (acc0, acc)
