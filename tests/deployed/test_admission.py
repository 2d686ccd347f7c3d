"""Issue #20 findings 6 and 7 as tests: who may make a node buffer and store bytes, and
retries that cannot strike the honest. Each test is the attack (or the honest mishap)
first, then what the node must do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployed_kit import admit, key_of, node_cfg

from deai.node.daemon import Node
from deai.node.hooks import Rejection
from deai.node.http import create_app
from deai.node.messages import TrainTask, Update, encode
from deai.node.runtime import NodeRuntime, PeerDirectory, RuntimeConfig
from deai.node.signing import Signer, crypto_backend, recover
from deai.node.store import ArtifactStore, sha256_hex

PEER = Signer(key_of(7))
STRANGER = Signer(key_of(8))  # never registered, no job, no stake


async def _with_node(tmp: Path, fn: Any, **cfg: Any) -> None:
    node = Node(node_cfg(tmp, 0, ["provider"], shards=4, **cfg), key_of(0))
    admit(node, PEER)
    app = create_app(node)
    await node.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        ) as client:
            await fn(node, client)
    finally:
        await node.shutdown()


def _update(job: str, round_: int, payload: bytes) -> bytes:
    return encode(Update(job, round_, "identity", len(payload) // 4, "float32", payload, 10))


async def _send(
    client: httpx.AsyncClient, node: Node, body: bytes, signer: Signer, round_: int = 1
) -> httpx.Response:
    env = signer.sign(node.address, body, round_)
    return await client.post("/v1/message", content=body, headers=env.headers())


def test_stranger_cannot_fill_the_disk(tmp_path: Path) -> None:
    """Finding 6: never-registered keys got 202 for 8 signed 7.9 MB updates and 201 for
    artifact PUTs. Now a stranger's large body is refused from its headers (503, unread),
    its small artifacts are forbidden, and nothing of it is stored."""

    async def check(node: Node, client: httpx.AsyncClient) -> None:
        before = node.store.digests()
        big = _update("job", 1, b"\0" * (3 * 1024 * 1024))
        for _ in range(8):
            r = await _send(client, node, big, STRANGER)
            assert (r.status_code, r.json()["error"]) == (503, "not_yet")
        small = b"\x01" * 1000
        env = STRANGER.sign(node.address, small)
        h = env.headers() | {"x-deai-digest": sha256_hex(small)}
        r = await client.put("/v1/artifacts", content=small, headers=h)
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        # a message for a job this node does not know: refused (retriably), not stored
        r = await _send(client, node, _update("other-job", 1, b"\0" * 64), PEER)
        assert (r.status_code, r.json()["error"]) == (503, "unknown_job")
        assert node.store.digests() == before
        assert node.runtime.admission.buffered == 0
        assert dict(node.runtime.strikes) == {}
        # the party's retry of the same envelope, once the job is known, is accepted
        body = encode(TrainTask("late-job", 1, b"\0" * 8, "0" * 64))
        env = PEER.sign(node.address, body, 1)
        r = await client.post("/v1/message", content=body, headers=env.headers())
        assert r.status_code == 503
        admit(node, PEER, job="late-job")
        r = await client.post("/v1/message", content=body, headers=env.headers())
        assert r.status_code == 202, r.text

    asyncio.run(_with_node(tmp_path, check, max_body_bytes=4 * 1024 * 1024))


def test_unsigned_bodies_are_never_buffered(tmp_path: Path) -> None:
    """Finding 6: 16 unsigned 8 MB bodies were buffered before the signature check."""

    async def check(node: Node, client: httpx.AsyncClient) -> None:
        read = 0

        async def body() -> Any:
            nonlocal read
            for _ in range(64):
                read += 1
                yield b"u" * 65536

        for _ in range(4):
            r = await client.post("/v1/message", content=body())
            assert (r.status_code, r.json()["error"]) == (400, "malformed")
        assert node.runtime.admission.buffered == 0
        assert node.store.digests() == []

    asyncio.run(_with_node(tmp_path, check))


def test_rate_limit_and_quota(tmp_path: Path) -> None:
    async def check(node: Node, client: httpx.AsyncClient) -> None:
        codes = []
        for r_ in range(1, 13):
            r = await _send(client, node, _update("job", r_, b"\0" * 4000), PEER, r_)
            codes.append(r.status_code)
        assert 429 in codes and codes[0] == 202, codes
        assert (await client.get("/v1/health")).status_code == 200  # never rate limited
        assert dict(node.runtime.strikes) == {}  # refusing work is not a judgement

    admission = {"rate_per_s": 0.01, "burst": 20.0, "key_quota_mb": 0.02}
    asyncio.run(_with_node(tmp_path, check, admission=admission))


def test_signature_check_is_cheap() -> None:
    """Finding 6: a random well-formed signature cost ~12 ms of pure-Python ecrecover on
    the event loop. With the compiled backend a recovery costs well under a millisecond."""
    assert crypto_backend() == "CoinCurveECCBackend"
    body = b"x" * 1000
    envs = [STRANGER.sign(PEER.address, body) for _ in range(50)]
    t0 = time.perf_counter()
    for env in envs:
        recover(env, body)
    per = (time.perf_counter() - t0) / len(envs)
    assert per < 2e-3, per


class _Down:
    """A transport whose peer is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.delivered: list[int] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> int:
        if not self.up:
            raise httpx.ConnectError("down")
        self.delivered.append(int(headers["x-deai-round"]))
        return 202

    async def aclose(self) -> None:
        return None


def test_stale_round_retry_is_dropped_by_the_sender(tmp_path: Path) -> None:
    """Finding 7: a provider that restarted trained the stale task the validator kept
    retrying and was struck for wrong_round. The sender now drops a queued message once
    it sent a later round's message of the same kind to the same peer."""

    async def run() -> None:
        poster = _Down()
        me = Signer(key_of(1))
        rt = NodeRuntime(
            me,
            PeerDirectory({PEER.address: "http://peer"}),
            ArtifactStore(tmp_path / "a"),
            RuntimeConfig(send_retry_s=10.0),
            poster,
        )
        await rt.start()
        rt.send(PEER.address, TrainTask("job", 2, b"\0" * 8, "0" * 64))
        await asyncio.sleep(0.3)
        rt.send(PEER.address, TrainTask("job", 3, b"\0" * 8, "0" * 64))
        await asyncio.sleep(0.2)
        poster.up = True  # the provider restarts
        for _ in range(100):
            if poster.delivered:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert poster.delivered == [3]
        assert rt.metrics.stale_dropped == 1
        await rt.close()

    asyncio.run(run())


class _LateRole:
    """Refuses every message as an update for a closed round (what a validator does)."""

    def __init__(self) -> None:
        self.rejections: list[Rejection] = []

    def attach(self, ctx: Any) -> None:
        return None

    def start(self) -> None:
        return None

    def handle(self, sender: str, msg: Any) -> None:
        self.rejections.append(Rejection(msg.round, sender, "wrong_round", "round closed"))


def test_late_update_is_refused_without_a_strike(tmp_path: Path) -> None:
    async def check(node: Node, client: httpx.AsyncClient) -> None:
        node.runtime.roles.append(_LateRole())  # type: ignore[arg-type]
        r = await _send(client, node, _update("job", 1, b"\0" * 64), PEER)
        assert (r.status_code, r.json()["error"]) == (409, "late")
        assert dict(node.runtime.strikes) == {}

    asyncio.run(_with_node(tmp_path, check))


@pytest.mark.slow
def test_info_logs_appear_after_opacus_import() -> None:
    """Finding 8: node logs were empty at INFO because opacus calls logging.basicConfig on
    import, which made the daemon's own configuration a no-op."""
    code = (
        "import logging, opacus.utils.module_utils\n"
        "from deai.node.daemon import configure_logging\n"
        "configure_logging('INFO')\n"
        "logging.getLogger('deai.node').info('node-info-line')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "INFO deai.node: node-info-line" in out.stderr
