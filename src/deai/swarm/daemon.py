"""Block servers as processes: ``python -m deai.swarm.daemon CONFIG.json [CONFIG.json ...]``
(or ``deai swarm serve``).

With several configs (a loopback cluster) the launcher imports torch once, loads the
public weights once and forks one process per server, which then share the weights
copy-on-write; each child is a separate server with its own key, port, state and
sessions, and killing one leaves the others running. Importing torch and transformers
takes tens of seconds on a loaded two-core machine, which a fork pays only once.

The process loads the public weights (:class:`~deai.swarm.manifest.ModelSource`), checks
them against the manifest, registers its stake on the swarm ledger if it is not yet
registered, and serves the :class:`~deai.swarm.server.BlockServer` over HTTP:

=======  ========================  ========================================================
method   path                      what
=======  ========================  ========================================================
POST     /swarm/v1/{kind}          a signed call (envelope of :mod:`deai.node.signing`;
                                   body: a :mod:`deai.swarm.wire` message)
GET      /swarm/v1/health          liveness, address, span
=======  ========================  ========================================================

A background thread gossips every ``refresh_s``: it pushes a fresh signed record to every
peer, pulls their records, and lets the server rebalance. Calls are answered one at a time
(a lock around the role), which keeps sessions consistent; a refusal of the envelope is a
4xx ``{"error", "detail"}``, a refusal by the role is a normal answer carrying ``error``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from eth_account import Account
from eth_utils import to_checksum_address
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from deai.errors import ConfigError
from deai.node.http import STATUS_OF, SizeLimit
from deai.node.signing import Envelope, Rejected, ReplayGuard, verify
from deai.swarm.adversary import Cheater, Strategy
from deai.swarm.manifest import Manifest, ModelSource
from deai.swarm.receipts import NO_LEDGER
from deai.swarm.records import IdentityCheck, RecordBook, ServerRecord
from deai.swarm.server import BlockServer, ServerConfig
from deai.swarm.transport import HttpTransport
from deai.swarm.wire import pack, unpack


@dataclass(frozen=True)
class DaemonConfig:
    key: str  # the server's private key (0x hex); a throwaway key in loopback clusters
    port: int
    n_serve: int
    model: dict[str, Any] = field(default_factory=dict)  # ModelSource fields
    host: str = "127.0.0.1"
    start: int | None = None  # fixed first block, or None to choose the weakest window
    peers: list[tuple[str, str]] = field(default_factory=list)  # (owner, url) to gossip with
    rpc: str | None = None  # JSON-RPC URL of the chain with the swarm ledger
    ledger: str | None = None  # SwarmLedger address
    stake_wei: int = 10**18
    price_wei: int = 0
    trusted: list[str] = field(default_factory=list)  # without a chain: the allowed owners
    adversary: dict[str, Any] | None = None  # fault injection in tests: {"strategy", "rate"}
    refresh_s: float = 5.0
    record_ttl_s: float = 30.0
    threads: int = 1

    @classmethod
    def load(cls, path: str | Path) -> DaemonConfig:
        try:
            data = json.loads(Path(path).read_text())
            data["peers"] = [tuple(p) for p in data.get("peers", [])]
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"swarm daemon: cannot read config {path}: {e}") from e

    def dump(self, path: str | Path) -> None:
        d = dict(self.__dict__)
        d["peers"] = [list(p) for p in self.peers]
        Path(path).write_text(json.dumps(d, indent=1))


class Daemon:
    def __init__(self, config: DaemonConfig, model: Any = None) -> None:
        torch.set_num_threads(config.threads)
        self.config = config
        self.address = to_checksum_address(Account.from_key(config.key).address)
        self.url = f"http://{config.host}:{config.port}"
        if model is None:
            model = ModelSource.from_dict(config.model).load()
        self.manifest = Manifest.of(model)
        self.ledger_obj: Any = None
        identity = self._identity()
        book = RecordBook(self.manifest, identity, ttl_s=config.record_ttl_s)
        adversary = None
        if config.adversary:
            adversary = Cheater(
                Strategy(config.adversary["strategy"]), float(config.adversary.get("rate", 1.0))
            )
        scfg = ServerConfig(
            n_serve=config.n_serve,
            url=self.url,
            start=config.start,
            ledger=config.ledger or NO_LEDGER,
            price_wei=config.price_wei,
            record_ttl_s=config.record_ttl_s,
            min_rebalance_interval_s=60.0,
        )
        self.server = BlockServer(scfg, model, self.manifest, config.key, book, adversary=adversary)
        self.lock = threading.Lock()
        self.guard = ReplayGuard()
        self.transport = HttpTransport(config.key)
        self._stop = threading.Event()

    def _identity(self) -> IdentityCheck:
        c = self.config
        if c.rpc and c.ledger:
            from deai.ledger.chain import RpcChain
            from deai.swarm.chain import ChainIdentity, SwarmLedger
            from deai.swarm.server import default_profile

            ledger = SwarmLedger(RpcChain(c.rpc), c.ledger)
            ledger.add_key(c.key)
            if not ledger.is_server(self.address, self.manifest.root, default_profile()):
                ledger.register(self.address, self.manifest.root, default_profile(), c.stake_wei)
            self.ledger_obj = ledger
            return ChainIdentity(ledger, self.manifest.root, default_profile())
        if c.trusted:
            allowed = {to_checksum_address(a) for a in c.trusted} | {self.address}
            return lambda owner: None if owner in allowed else "not in the trusted list"
        raise ConfigError("swarm daemon: need rpc + ledger (staked identities) or a trusted list")

    # ------------------------------------------------------------- calls
    def answer(self, kind: str, headers: Mapping[str, str], body: bytes) -> Response:
        try:
            env = Envelope.from_headers(headers)
            sender = verify(env, body, me=self.address, guard=self.guard)
        except Rejected as e:
            return JSONResponse(
                {"error": str(e.code), "detail": e.detail}, status_code=STATUS_OF[e.code]
            )
        with self.lock:
            out = self.server.handle(sender, kind, body)
        return Response(out, media_type="application/octet-stream")

    # ------------------------------------------------------------- gossip
    def gossip_once(self) -> None:
        with self.lock:
            self.server.tick()
            mine = self.server.record()
            known = {r.owner: r.url for r in self.server.book.live()}
        peers = dict(self.config.peers)
        peers.update(known)
        peers.pop(self.address, None)
        push = pack({"records": [mine.to_dict()]})
        for owner, url in peers.items():
            try:
                self.transport.call(owner, url, "records_put", push, 5.0)
                meta, _ = unpack(self.transport.call(owner, url, "records_get", pack({}), 5.0))
                recs = [ServerRecord.from_dict(d) for d in meta.get("records", [])[:1000]]
                with self.lock:
                    self.server.book.merge(recs)
            except Exception:  # a dead or garbled peer must not stop gossip
                continue

    def gossip_loop(self) -> None:
        while not self._stop.wait(self.config.refresh_s):
            self.gossip_once()

    def app(self) -> FastAPI:
        app = FastAPI(title="deai swarm server", version="1")

        @app.post("/swarm/v1/{kind}")
        async def call(kind: str, request: Request) -> Response:
            body = await request.body()
            return self.answer(kind, request.headers, body)

        @app.get("/swarm/v1/health")
        async def health() -> dict[str, Any]:
            s = self.server
            return {"status": "ok", "address": self.address, "start": s.span.start,
                    "end": s.span.end, "root": self.manifest.root, "calls": s.calls,
                    "pid": os.getpid()}  # fmt: skip

        app.add_middleware(SizeLimit, max_bytes=self.server.config.max_body_bytes)
        return app


def serve(config: DaemonConfig, model: Any = None) -> None:
    """Run one server until the process is stopped."""
    import uvicorn

    d = Daemon(config, model)
    d.gossip_once()
    threading.Thread(target=d.gossip_loop, daemon=True).start()
    print(f"serving blocks [{d.server.span.start}, {d.server.span.end}) as {d.address} at {d.url}",
          flush=True)  # fmt: skip
    uvicorn.run(d.app(), host=d.config.host, port=d.config.port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m deai.swarm.daemon CONFIG.json [CONFIG.json ...]", file=sys.stderr)
        return 2
    configs = [DaemonConfig.load(a) for a in args]
    if len(configs) == 1:
        serve(configs[0])
        return 0
    if len({json.dumps(c.model, sort_keys=True) for c in configs}) != 1:
        raise ConfigError("swarm daemon: forked servers must share one model source")
    torch.set_num_threads(1)
    model = ModelSource.from_dict(configs[0].model).load()
    children: list[int] = []
    for c in configs:
        pid = os.fork()
        if pid == 0:  # the child: one server
            try:
                serve(c, model)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
