"""An in-process deployed network: real ``Node`` objects and their FastAPI apps, talking
real HTTP semantics through ``httpx.ASGITransport`` on one event loop (no sockets, no
chain). Faults are injected through node config (``[faults]``), as in a real deployment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from deai.node.config import parse_node_config
from deai.node.daemon import Node
from deai.node.http import create_app
from deai.node.signing import Signer


def key_of(i: int) -> bytes:
    """A fixed, valid secp256k1 private key per index (test use only)."""
    return (i + 1).to_bytes(32, "big")


def addr(i: int) -> str:
    return Signer(key_of(i)).address


class AsgiPoster:
    """The runtime's transport, delivering to in-process apps by base URL."""

    def __init__(self, apps: Mapping[str, FastAPI]) -> None:
        self.apps = apps
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.down: set[str] = set()  # URLs that behave like a dead host

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> int:
        if url in self.down:
            raise httpx.ConnectError(f"{url} is down")
        if url not in self.clients:
            self.clients[url] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.apps[url]), base_url=url
            )
        r = await self.clients[url].post("/v1/message", content=body, headers=dict(headers))
        return r.status_code

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()


@dataclass
class Net:
    nodes: list[Node]
    apps: list[FastAPI]
    posters: list[AsgiPoster]
    urls: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, i: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.apps[i]), base_url=self.urls[i]
        )

    async def close(self) -> None:
        for n in self.nodes:
            await n.shutdown()


def node_cfg(
    tmp: Path,
    i: int,
    roles: list[str],
    *,
    shards: int,
    index: int = 0,
    peers: Mapping[str, str] | None = None,
    faults: Mapping[str, Any] | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    strike_limit: int = 50,
    admission: Mapping[str, Any] | None = None,
) -> Any:
    return parse_node_config(
        {
            "node": {
                "name": f"n{i}",
                "roles": roles,
                "password_env": "DEAI_UNUSED",
                "data_dir": str(tmp / f"n{i}"),
                "port": 9000 + i,
                "send_retry_s": 2.0,
                "max_body_bytes": max_body_bytes,
                "strike_limit": strike_limit,
            },
            "data": {"dataset": "digits", "partition": "iid", "shards": shards, "index": index},
            "faults": dict(faults or {}),
            "peers": dict(peers or {}),
            "admission": dict(admission or {}),
        },
        base=tmp,
    )


async def build_net(
    tmp: Path, n_providers: int, faults: Mapping[int, Mapping[str, Any]] | None = None
) -> Net:
    """Node 0 requester, node 1 validator, nodes 2.. providers; all started."""
    n = 2 + n_providers
    urls = [f"http://node{i}.test" for i in range(n)]
    peers = {addr(i): urls[i] for i in range(n)}
    apps: dict[str, FastAPI] = {}
    nodes, posters = [], []
    for i in range(n):
        roles = ["requester"] if i == 0 else ["validator"] if i == 1 else ["provider"]
        cfg = node_cfg(
            tmp, i, roles, shards=n_providers, index=max(0, i - 2), peers=peers,
            faults=(faults or {}).get(i),
        )  # fmt: skip
        poster = AsgiPoster(apps)
        node = Node(cfg, key_of(i), poster=poster)
        apps[urls[i]] = create_app(node)
        nodes.append(node)
        posters.append(poster)
    for node in nodes:
        await node.startup()
    return Net(nodes, [apps[u] for u in urls], posters, urls)


def job_toml(net: Net, rounds: int = 2, timeout_s: float = 30.0, hidden: int = 32) -> str:
    providers = ", ".join(f'"{n.address}"' for n in net.nodes[2:])
    return f"""
name = "t"
rounds = {rounds}
seed = 0
round_timeout_s = {timeout_s}
nonce = "fixed"
[parties]
requester = "{net.nodes[0].address}"
providers = [{providers}]
validators = ["{net.nodes[1].address}"]
[model]
hidden = [{hidden}]
[algorithm]
name = "fedavg"
epochs = 3
lr = 0.1
"""


def admit(node: Node, *signers: Signer, job: str = "job") -> None:
    """Make ``signers`` parties of a (fake) job ``job`` this node knows, as an OpenJob
    naming them would (unit tests of the HTTP layer, which have no real job)."""
    node.known_jobs.add(job)
    node.parties.update(s.address.lower() for s in signers)


async def wait_for(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(step_s)
    return cond()
