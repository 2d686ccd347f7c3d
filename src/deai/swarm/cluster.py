"""A loopback swarm: anvil, the swarm ledger and one server process per span.

:class:`LoopbackSwarm` starts anvil on 127.0.0.1, deploys ``SwarmLedger``, makes a
throwaway key per server and funds it from anvil's first dev account, writes each
server's config and starts one ``python -m deai.swarm.daemon`` launcher that forks one
process per server (one import of torch for all; see :mod:`deai.swarm.daemon`). Each
server stakes itself on the ledger when it starts; a client built by
:meth:`LoopbackSwarm.client` accepts only records of staked owners. :meth:`kill` sends
SIGKILL (a crash, not a goodbye), :meth:`stop` ends everything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

import deai
from deai.ledger.anvil import AnvilProcess, free_port
from deai.ledger.chain import RpcChain
from deai.swarm.blocks import ClientParts
from deai.swarm.chain import ChainIdentity, SwarmLedger, SwarmLedgerConfig
from deai.swarm.client import ClientConfig, SwarmClient
from deai.swarm.daemon import DaemonConfig
from deai.swarm.errors import SwarmError
from deai.swarm.manifest import Manifest, ModelSource
from deai.swarm.records import RecordBook
from deai.swarm.server import default_profile
from deai.swarm.transport import HttpTransport


@dataclass(frozen=True)
class ClusterSpec:
    spans: tuple[tuple[int, int], ...]  # one server per span
    model: ModelSource = field(default_factory=ModelSource)
    adversaries: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> cheat
    price_wei: int = 0
    startup_timeout_s: float = 240.0
    refresh_s: float = 5.0  # gossip period of every server


class LoopbackSwarm:
    def __init__(self, spec: ClusterSpec, workdir: Path | None = None) -> None:
        self.spec = spec
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="deai-swarm-"))
        self.anvil: AnvilProcess | None = None
        self.ledger: SwarmLedger | None = None
        self.launcher: subprocess.Popen[bytes] | None = None
        self.pids: dict[int, int] = {}  # server index -> its process id
        self.killed: set[int] = set()
        self.keys: list[str] = []
        self.urls: list[str] = []
        self.addresses: list[str] = []

    def __enter__(self) -> LoopbackSwarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, wait: bool = True) -> LoopbackSwarm:
        """Start everything; with ``wait=False`` return once the launcher runs (call
        :meth:`wait` later, e.g. after other work that can overlap the servers' start)."""
        self.anvil = AnvilProcess().start()
        chain = RpcChain(self.anvil.url)
        self.ledger = SwarmLedger.deploy(chain, SwarmLedgerConfig())
        funder = chain.accounts[0]
        n = len(self.spec.spans)
        ports = [free_port() for _ in range(n)]
        self.keys = ["0x" + secrets.token_bytes(32).hex() for _ in range(n)]
        self.addresses = [Account.from_key(k).address for k in self.keys]
        self.urls = [f"http://127.0.0.1:{p}" for p in ports]
        for a in self.addresses:
            chain.w3.eth.send_transaction(
                {"from": funder, "to": a, "value": Web3.to_wei(100, "ether")}
            )
        env = {**os.environ, "PYTHONPATH": str(Path(deai.__file__).resolve().parents[1]),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        paths = []
        for i, (start, end) in enumerate(self.spec.spans):
            cfg = DaemonConfig(
                key=self.keys[i], port=ports[i], n_serve=end - start, start=start,
                model=self.spec.model.to_dict(),
                peers=[(self.addresses[j], self.urls[j]) for j in range(n) if j != i],
                rpc=self.anvil.url, ledger=self.ledger.address, price_wei=self.spec.price_wei,
                adversary=self.spec.adversaries.get(i), refresh_s=self.spec.refresh_s,
            )  # fmt: skip
            paths.append(self.dir / f"server-{i}.json")
            cfg.dump(paths[-1])
        log = open(self.dir / "servers.log", "wb")  # noqa: SIM115 - the child keeps it
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "deai.swarm.daemon", *map(str, paths)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        if wait:
            self.wait()
        return self

    def wait(self) -> None:
        """Block until every server answers its health check (or fail)."""
        deadline = time.monotonic() + self.spec.startup_timeout_s
        pending = set(range(len(self.urls)))
        while pending and time.monotonic() < deadline:
            if self.launcher is not None and self.launcher.poll() is not None:
                raise SwarmError(f"servers exited: {self.log()[-2000:]}")
            for i in sorted(pending):
                try:
                    r = httpx.get(f"{self.urls[i]}/swarm/v1/health", timeout=1.0, trust_env=False)
                    if r.status_code == 200:
                        self.pids[i] = int(r.json()["pid"])
                        pending.discard(i)
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
            time.sleep(0.25)
        if pending:
            self.stop()
            raise SwarmError(
                f"servers {sorted(pending)} did not start in {self.spec.startup_timeout_s} s"
            )

    def log(self) -> str:
        return (self.dir / "servers.log").read_text(errors="replace")

    def info(self) -> dict[str, Any]:
        """What a client needs to join (written to ``cluster.json`` by the CLI)."""
        assert self.anvil is not None and self.ledger is not None
        return {
            "rpc": self.anvil.url,
            "ledger": self.ledger.address,
            "servers": [list(p) for p in zip(self.addresses, self.urls, strict=True)],
            "model": self.spec.model.to_dict(),
            "spans": [list(s) for s in self.spec.spans],
        }

    def client(self, model: Any, config: ClientConfig | None = None) -> SwarmClient:
        """A client with its own key, the given public model (for its parts) and a record
        book that only trusts staked owners."""
        return connect(self.info(), model, config, expect=len(self.urls) - len(self.killed))

    def kill(self, i: int) -> None:
        """SIGKILL server ``i``: a crash, not a goodbye."""
        if i not in self.killed:
            os.kill(self.pids[i], signal.SIGKILL)
            self.killed.add(i)

    def stop(self) -> None:
        p = self.launcher
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if p is not None:
                os.killpg(p.pid, signal.SIGKILL)  # any child left behind
        self.launcher = None
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None


def connect(
    info: dict[str, Any], model: Any, config: ClientConfig | None = None, expect: int | None = None
) -> SwarmClient:
    """A fresh client of the swarm described by ``info`` (see :meth:`LoopbackSwarm.info`),
    waiting up to a minute until it knows ``expect`` servers (default: all listed)."""
    chain = RpcChain(str(info["rpc"]))
    ledger = SwarmLedger(chain, str(info["ledger"]))
    manifest = Manifest.of(model)
    key = "0x" + secrets.token_bytes(32).hex()
    identity = ChainIdentity(ledger, manifest.root, default_profile())
    book = RecordBook(manifest, identity)
    cfg = config or ClientConfig(ledger=ledger.address)
    servers = [(str(a), str(u)) for a, u in info["servers"]]
    c = SwarmClient(
        manifest, ClientParts(model), key, HttpTransport(key), book, cfg, bootstrap=servers
    )
    want = len(servers) if expect is None else expect
    deadline = time.monotonic() + 60
    while len(book.live()) < want and time.monotonic() < deadline:
        c.refresh()
        time.sleep(0.2)
    return c
