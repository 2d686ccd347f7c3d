"""Schemathesis fuzzes the published OpenAPI spec of a running node (in-process, ASGI):
malformed and oversized requests never produce a 5xx, never crash the node and never
change its state (stored artifacts, role state, nonces, strikes)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from deployed_kit import key_of, node_cfg
from hypothesis import HealthCheck, settings

from deai.node.daemon import Node
from deai.node.http import create_app
from deai.node.roles import Provider
from deai.node.signing import Signer

_TMP = Path(tempfile.mkdtemp(prefix="deai-fuzz-"))
NODE = Node(node_cfg(_TMP, 0, ["provider"], shards=4, max_body_bytes=2048), key_of(0))
APP = create_app(NODE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _state() -> dict[str, Any]:
    provider = NODE.role(Provider)
    assert isinstance(provider, Provider)
    return {
        "artifacts": NODE.store.digests(),
        "jobs": sorted(provider.jobs),
        "nonces": len(NODE.runtime.guard),
        "strikes": dict(NODE.runtime.strikes),
        "received": dict(NODE.runtime.metrics.received),
    }


BEFORE: dict[str, Any] = {}


@schema.parametrize()
@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
def test_api_fuzz(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:500])
    state = _state()  # the app has started (lifespan) by the first call
    BEFORE.setdefault("state", state)
    assert state == BEFORE["state"]


def test_oversized_bodies_refused() -> None:
    async def check() -> None:
        transport = httpx.ASGITransport(app=APP)  # no lifespan: refused before any handler
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            stranger = Signer(key_of(9))
            for method, path in (("POST", "/v1/message"), ("POST", "/v1/jobs"),
                                 ("PUT", "/v1/artifacts")):  # fmt: skip
                body = b"z" * 4096
                headers = stranger.sign(NODE.address, body).headers()
                r = await client.request(method, path, content=body, headers=headers)
                assert (r.status_code, r.json()["error"]) == (413, "too_large")
                r = await client.request(method, path, content=body)  # unsigned: unread
                assert (r.status_code, r.json()["error"]) == (400, "malformed")
        assert NODE.store.digests() == []

    asyncio.run(check())
