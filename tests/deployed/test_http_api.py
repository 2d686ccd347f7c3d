"""The HTTP API of one node: every refusal has its status and code, and is logged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from deployed_kit import admit, key_of, node_cfg

from deai.node.daemon import Node
from deai.node.http import create_app
from deai.node.messages import TrainTask, encode
from deai.node.signing import Signer
from deai.node.store import sha256_hex

PEER = Signer(key_of(7))


async def _with_node(tmp: Path, fn: Any, *, party: bool = True, **cfg: Any) -> None:
    node = Node(node_cfg(tmp, 0, ["provider"], shards=4, **cfg), key_of(0))
    if party:
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


def _msg(round_: int = 1) -> bytes:
    return encode(TrainTask("job", round_, b"\0" * 8, "0" * 64))


async def _post(
    client: httpx.AsyncClient, node: Node, body: bytes, signer: Signer = PEER, **over: Any
) -> httpx.Response:
    env = signer.sign(over.pop("recipient", node.address), body, over.pop("round", 1), **over)
    return await client.post("/v1/message", content=body, headers=env.headers())


def test_message_statuses(tmp_path: Path) -> None:
    async def check(node: Node, client: httpx.AsyncClient) -> None:
        ok = await _post(client, node, _msg(2), round=2)
        assert ok.status_code == 202 and ok.json()["kind"] == "train_task"
        # replay of the very same request
        env = PEER.sign(node.address, _msg(3), 3)
        assert (
            await client.post("/v1/message", content=_msg(3), headers=env.headers())
        ).status_code == 202
        r = await client.post("/v1/message", content=_msg(3), headers=env.headers())
        # a re-delivery (the sender's retry after a lost answer): answered, not an offence
        assert (r.status_code, r.json()["status"]) == (200, "duplicate")
        # a round lower than one this sender already sent for the job
        r = await _post(client, node, _msg(1), round=1)
        assert (r.status_code, r.json()["error"]) == (409, "stale_round")
        # signed by someone else than the claimed sender
        h = env.headers() | {"x-deai-sender": Signer(key_of(8)).address}
        r = await client.post("/v1/message", content=_msg(3), headers=h)
        assert (r.status_code, r.json()["error"]) == (401, "wrong_signer")
        r = await _post(client, node, _msg(4), round=4, recipient=PEER.address)
        assert (r.status_code, r.json()["error"]) == (421, "wrong_recipient")
        r = await _post(client, node, _msg(4), round=4, timestamp=int(time.time()) - 3600)
        assert (r.status_code, r.json()["error"]) == (409, "stale")
        r = await _post(client, node, _msg(4), round=5)  # envelope and message disagree
        assert (r.status_code, r.json()["error"]) == (400, "malformed")
        r = await _post(client, node, b"\xff garbage", round=-1)
        assert (r.status_code, r.json()["error"]) == (400, "malformed")
        r = await client.post("/v1/message", content=b"unsigned")
        assert (r.status_code, r.json()["error"]) == (400, "malformed")
        # strikes count only authenticated refusals (stale_round, 2 x malformed)
        assert dict(node.runtime.strikes) == {PEER.address: 3}
        assert node.runtime.metrics.duplicates == 1

    asyncio.run(_with_node(tmp_path, check))


def test_size_limit_and_ban(tmp_path: Path) -> None:
    async def check(node: Node, client: httpx.AsyncClient) -> None:
        big = b"x" * 5000
        r = await _post(client, node, big)
        assert (r.status_code, r.json()["error"]) == (413, "too_large")

        async def chunks():  # no Content-Length: streamed, still cut at the limit
            for _ in range(10):
                yield b"y" * 1000

        env = PEER.sign(node.address, b"y" * 10_000)
        r = await client.post("/v1/message", content=chunks(), headers=env.headers())
        assert r.status_code == 413
        r = await client.post("/v1/message", content=b"unsigned")
        assert (r.status_code, r.json()["error"]) == (400, "malformed")
        for _ in range(2):
            assert (await _post(client, node, b"junk", round=-1)).status_code == 400
        r = await _post(client, node, _msg(1))
        assert (r.status_code, r.json()["error"]) == (403, "banned")
        assert node.store.digests() == []

    asyncio.run(_with_node(tmp_path, check, max_body_bytes=4096, strike_limit=2))


def test_artifacts_and_jobs(tmp_path: Path) -> None:
    async def check(node: Node, client: httpx.AsyncClient) -> None:
        data = b"\x01\x02" * 100
        env = PEER.sign(node.address, data)
        r = await client.put(
            "/v1/artifacts", content=data, headers=env.headers() | {"x-deai-digest": "ab" * 32}
        )
        assert (r.status_code, r.json()["error"]) == (422, "bad_digest")
        env = PEER.sign(node.address, data)
        h = env.headers() | {"x-deai-digest": sha256_hex(data)}
        r = await client.put("/v1/artifacts", content=data, headers=h)
        assert r.status_code == 201 and r.json()["digest"] == sha256_hex(data)
        r = await client.get(f"/v1/artifacts/{sha256_hex(data)}")
        assert r.status_code == 200 and r.content == data
        assert (await client.get("/v1/artifacts/" + "0" * 64)).status_code == 404
        assert (await client.get("/v1/artifacts/..%2F..%2Fetc")).status_code in (400, 404)
        r = await client.put("/v1/artifacts", content=b"unsigned")
        assert r.status_code == 400
        # job submission: only this node's own key, and only on a requester
        body = b"rounds = 1\n"
        env = PEER.sign(node.address, body)
        r = await client.post("/v1/jobs", content=body, headers=env.headers())
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        env = node.signer.sign(node.address, body)
        r = await client.post("/v1/jobs", content=body, headers=env.headers())
        assert (r.status_code, r.json()["error"]) == (422, "bad_job")
        assert (await client.get("/v1/jobs/none")).status_code == 404
        health = (await client.get("/v1/health")).json()
        assert health == {"status": "ok", "address": node.address}
        status = (await client.get("/v1/status")).json()
        assert status["roles"] == ["provider"] and "metrics" in status
        spec = (await client.get("/openapi.json")).json()
        assert {"/v1/message", "/v1/artifacts", "/v1/artifacts/{digest}", "/v1/health",
                "/v1/status", "/v1/jobs", "/v1/jobs/{job_id}"} <= set(spec["paths"])  # fmt: skip

    asyncio.run(_with_node(tmp_path, check))
