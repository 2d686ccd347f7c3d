"""Acceptance on a loopback cluster: anvil, the swarm ledger and one process per server,
serving SmolLM2-135M (30 blocks) in three spans plus a spare copy of the middle one.

* 32 greedy tokens through 3 servers equal ``transformers``' local ``generate``;
* SIGKILL of the server in use mid-generation: the client replays onto the spare and the
  tokens are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from deai.ledger.anvil import find_anvil
from deai.swarm.client import ClientConfig
from deai.swarm.cluster import ClusterSpec, LoopbackSwarm
from deai.swarm.manifest import ModelKind, ModelSource

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anvil,
    pytest.mark.llm,
    pytest.mark.skipif(
        find_anvil() is None,
        reason="anvil not found: `npm install --prefix .tools @foundry-rs/anvil` or $DEAI_ANVIL",
    ),
]

SPANS = ((0, 10), (10, 20), (20, 30), (10, 20))  # the last one is a spare
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def real(smollm2: Any) -> Iterator[tuple[LoopbackSwarm, torch.Tensor, torch.Tensor]]:
    model, tok = smollm2
    sw = LoopbackSwarm(ClusterSpec(spans=SPANS, model=ModelSource(kind=ModelKind.SMOLLM2)))
    sw.start(wait=False)  # the servers import torch while we generate locally
    try:
        ids = tok(PROMPT, return_tensors="pt").input_ids
        with torch.no_grad():
            # eos_token_id=None: 32 tokens even past an end-of-text token, as the swarm does
            local = model.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=None)
        sw.wait()
        yield sw, ids, local
    finally:
        sw.stop()


def test_32_greedy_tokens_through_three_servers_match_local_generation(
    real: Any, smollm2: Any
) -> None:
    sw, ids, local = real
    c = sw.client(smollm2[0], ClientConfig(ledger=sw.info()["ledger"]))
    with c.session(8) as probe:
        assert len(probe.route) == 3 and [h.n_blocks for h in probe.route] == [10, 10, 10]
    out = c.generate(ids, 32)
    assert out.tolist() == local.tolist()
    assert len(c.tally.units) == 3 and c.failures == []


def test_a_server_killed_mid_generation_leaves_the_output_unchanged(
    real: Any, smollm2: Any
) -> None:
    sw, ids, local = real
    c = sw.client(smollm2[0], ClientConfig(ledger=sw.info()["ledger"], call_timeout_s=20.0))
    with c.session(8) as probe:
        middle = probe.route[1]
    victim = sw.urls.index(middle.url)

    def kill(i: int, token: int) -> None:
        if i == 6:
            sw.kill(victim)

    n = 16
    out = c.generate(ids, n, on_token=kill)
    assert out.tolist() == local[:, : ids.shape[1] + n].tolist()
    assert c.recoveries == 1 and [o for _, o, _ in c.failures] == [middle.owner]
