"""How a client's call reaches a server: in memory on a virtual clock, or over HTTP.

Both transports implement :class:`Transport`: ``call(owner, url, kind, body)`` returns the
server's answer bytes or raises :class:`~deai.swarm.errors.ServerFailed`
(``unreachable`` / ``timeout`` / the server's error code). The roles above never know
which one they run on.

:class:`SimTransport` runs many :class:`~deai.swarm.server.BlockServer` objects in one
process. A call costs, on the virtual clock, the request's transfer, the server's compute
and the answer's transfer over :class:`Link` models (one-way latency plus bytes over the
slower bandwidth of the two ends, as ``deai.sim.network`` counts them). Compute is either
*measured* (the wall time the real computation took, times the server's slowdown) or
*modelled* from the server's throughput (deterministic). Faults are injected here: a
killed server's calls fail with ``unreachable`` after the client's timeout.

:class:`HttpTransport` signs every request with the client's key in the node's envelope
(:mod:`deai.node.signing`: sender, recipient, nonce, timestamp, signature) and POSTs it to
``{url}/swarm/v1/{kind}``; the server's app (:mod:`deai.swarm.daemon`) checks it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from deai.node.signing import Signer
from deai.swarm.errors import ServerFailed
from deai.swarm.server import BlockServer
from deai.swarm.wire import unpack


class Transport(Protocol):
    def call(self, owner: str, url: str, kind: str, body: bytes, timeout_s: float) -> bytes: ...

    def clock(self) -> float: ...


class VirtualClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass(frozen=True)
class Link:
    latency_s: float = 0.05  # one-way latency to the network core
    bandwidth_bps: float = 100e6  # up = down


def transfer_s(a: Link, b: Link, nbytes: int) -> float:
    return a.latency_s + b.latency_s + 8.0 * nbytes / min(a.bandwidth_bps, b.bandwidth_bps)


@dataclass
class SimStats:
    calls: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    compute_s: dict[str, float] = field(default_factory=dict)  # per server url
    compute_by_kind: dict[str, float] = field(default_factory=dict)  # per call kind
    network_s: float = 0.0


class SimTransport:
    """Many servers in one process, on a virtual clock with a network model."""

    def __init__(
        self,
        client_address: str,
        clock: VirtualClock | None = None,
        client_link: Link | None = None,
        measured_compute: bool = True,
    ) -> None:
        self.client_address = client_address
        self.vclock = clock or VirtualClock()
        self.client_link = client_link or Link()
        self.measured_compute = measured_compute
        self.servers: dict[str, BlockServer] = {}
        self.links: dict[str, Link] = {}
        self.slowdown: dict[str, float] = {}
        self.dead: set[str] = set()
        self.stats = SimStats()
        self.on_call: Callable[[str, str], None] | None = None  # fault hook (url, kind)

    def clock(self) -> float:
        return self.vclock()

    def as_client(self, address: str) -> SimTransport:
        """The same simulated network (servers, clock, faults, stats) seen by another
        client: its calls are authenticated as ``address``."""
        view = copy.copy(self)
        view.client_address = address
        return view

    def add(self, server: BlockServer, link: Link | None = None, slowdown: float = 1.0) -> None:
        url = server.config.url
        self.servers[url] = server
        self.links[url] = link or Link()
        self.slowdown[url] = slowdown

    def kill(self, url: str) -> None:
        self.dead.add(url)

    def call(self, owner: str, url: str, kind: str, body: bytes, timeout_s: float) -> bytes:
        if self.on_call is not None:
            self.on_call(url, kind)
        server = self.servers.get(url)
        if server is None or url in self.dead or server.address != owner:
            self.vclock.advance(timeout_s)
            raise ServerFailed(owner, "unreachable", url)
        link = self.links[url]
        up = transfer_s(self.client_link, link, len(body))
        t0 = time.perf_counter()
        answer = server.handle(self.client_address, kind, body)
        wall = time.perf_counter() - t0
        if self.measured_compute:
            compute = wall * self.slowdown[url]
        else:
            meta, tensors = unpack(body)
            rows = sum(
                t.shape[0] * t.shape[1]
                for k, t in tensors.items()
                if k.startswith("hidden") and t.dim() == 3
            )
            blocks = int(meta.get("end", 0)) - int(meta.get("start", 0))
            compute = rows * max(blocks, 0) / server.throughput * self.slowdown[url]
        down = transfer_s(link, self.client_link, len(answer))
        self.stats.calls += 1
        self.stats.bytes_sent += len(body)
        self.stats.bytes_received += len(answer)
        self.stats.compute_s[url] = self.stats.compute_s.get(url, 0.0) + compute
        self.stats.compute_by_kind[kind] = self.stats.compute_by_kind.get(kind, 0.0) + compute
        self.stats.network_s += up + down
        if up + compute + down > timeout_s:
            self.vclock.advance(timeout_s)
            raise ServerFailed(owner, "timeout", f"{up + compute + down:.3f} s > {timeout_s} s")
        self.vclock.advance(up + compute + down)
        return answer


class HttpTransport:
    """Signed HTTP calls to server processes."""

    def __init__(self, private_key: bytes | str) -> None:
        self.signer = Signer(private_key)
        self.http = httpx.Client(trust_env=False)

    def clock(self) -> float:
        return time.time()

    def close(self) -> None:
        self.http.close()

    def call(self, owner: str, url: str, kind: str, body: bytes, timeout_s: float) -> bytes:
        env = self.signer.sign(owner, body)
        try:
            r = self.http.post(
                f"{url.rstrip('/')}/swarm/v1/{kind}",
                content=body,
                headers={**env.headers(), "content-type": "application/octet-stream"},
                timeout=timeout_s,
            )
        except httpx.TimeoutException as e:
            raise ServerFailed(owner, "timeout", str(e)) from e
        except httpx.HTTPError as e:
            raise ServerFailed(owner, "unreachable", str(e)) from e
        if r.status_code >= 300:
            try:
                err = json.loads(r.text)
                code, detail = str(err.get("error", r.status_code)), str(err.get("detail", ""))
            except ValueError:
                code, detail = f"http_{r.status_code}", r.text[:200]
            raise ServerFailed(owner, code, detail)
        return r.content
