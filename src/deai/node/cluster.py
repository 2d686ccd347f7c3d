"""A local multi-process deai network on loopback (``deai cluster up`` / ``down``).

:meth:`Cluster.up` starts anvil on 127.0.0.1, deploys the contracts, creates one
encrypted keystore per node (fast KDF: these are throwaway keys), funds each node from
anvil's first dev account, writes every ``node.toml`` into ``DIR/node-<i>/`` and starts
one ``python -m deai.node.daemon`` process per node, each in its own process group (and
writing ``data/node.pid``, so a node restarted by hand is stopped by ``down`` too). Each
node registers itself (endpoint, roles, stake) in the Registry when it starts, so the
nodes discover one another on the chain. ``DIR/cluster.json`` records the pids and URLs,
so ``deai cluster down`` (another process) can stop everything: SIGTERM first (graceful),
SIGKILL after a grace period. A pid is signalled only if its command line is still the
one we started, so a recycled pid is never hit.

Roles: node 0 is the requester, nodes 1..V the validators, the rest providers, each
holding one IID shard of the dataset (same seed on every node).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.types import Wei

from deai.errors import ConfigError, DeaiError
from deai.ledger.anvil import AnvilProcess, free_port
from deai.ledger.chain import RpcChain
from deai.ledger.client import Ledger
from deai.ledger.types import Deployment, LedgerConfig
from deai.node.http import NodeClient
from deai.node.keystore import FAST_KDF_WORK, create_keystore

STATE_FILE = "cluster.json"


class ClusterError(DeaiError, RuntimeError):
    """A cluster could not be started, found or stopped."""


@dataclass(frozen=True)
class ClusterConfig:
    nodes: int = 5  # total processes: 1 requester + validators + providers
    validators: int = 1
    stake_wei: int = 10**18  # the deployment's minimum stake, and what a non-validator stakes
    # a validator locks the job slash (1 ETH) per committee seat it accepts, and seats are
    # drawn with replacement: with only the minimum staked, a member drawn twice cannot
    # commit, and the round waits out its windows (then aborts). 10 ETH backs every seat of
    # a 3-seat committee on three jobs at once.
    validator_stake_wei: int = 10 * 10**18
    stakes: dict[int, int] = field(default_factory=dict)  # node index -> stake (override)
    fund_wei: int = 100 * 10**18  # sent to each node from anvil's first dev account
    dataset: str = "digits"
    partition: str = "iid"
    seed: int = 0
    faults: dict[int, dict[str, Any]] = field(default_factory=dict)  # node index -> [faults]
    round_send_retry_s: float = 30.0  # node.send_retry_s
    startup_timeout_s: float = 180.0

    def __post_init__(self) -> None:
        if self.validator_stake_wei < self.stake_wei:
            raise ConfigError("cluster: validator_stake_wei must be at least stake_wei")
        if any(v < self.stake_wei for v in self.stakes.values()):
            raise ConfigError("cluster: every stake must be at least stake_wei (the minimum)")
        if self.validators < 1 or self.nodes < self.validators + 2:
            raise ConfigError(
                f"cluster: need nodes >= validators + 2 (a requester and a provider); got "
                f"nodes={self.nodes}, validators={self.validators}"
            )

    def stake_of(self, i: int) -> int:
        """What node ``i`` stakes at registration."""
        if i in self.stakes:
            return self.stakes[i]
        return self.validator_stake_wei if self.role(i) == "validator" else self.stake_wei

    def role(self, i: int) -> str:
        return "requester" if i == 0 else "validator" if i <= self.validators else "provider"


def _alive(pid: int, needle: str) -> bool:
    """Whether ``pid`` runs and its command line contains ``needle`` (pid-reuse guard)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return needle in cmd


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, needle: str, timeout_s: float) -> bool:
    """Wait for a process that is not our child (a zombie's empty cmdline counts as gone)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not _alive(pid, needle):
            return True
        time.sleep(0.05)
    return False


class Cluster:
    """A running (or recorded) local cluster rooted at ``directory``."""

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        self.dir = directory
        self.state = state
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # children of this process

    # --------------------------------------------------------------------- state
    @property
    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.state["nodes"]
        return nodes

    @property
    def rpc_url(self) -> str:
        return str(self.state["anvil"]["url"])

    def save(self) -> None:
        (self.dir / STATE_FILE).write_text(json.dumps(self.state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        try:
            return cls(directory, json.loads((directory / STATE_FILE).read_text()))
        except (OSError, ValueError) as e:
            raise ClusterError(f"{directory}: no cluster here ({e})") from None

    def ledger(self) -> Ledger:
        deployment = Deployment.load(self.dir / "deployment.json")
        return Ledger(RpcChain(self.rpc_url), deployment)

    def client(self, i: int) -> NodeClient:
        return NodeClient(self.nodes[i]["url"])

    # ---------------------------------------------------------------------- up
    @classmethod
    def up(cls, directory: Path, config: ClusterConfig | None = None) -> Cluster:
        """Start anvil, deploy, write node configs, start every node and wait for health."""
        config = config or ClusterConfig()
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / STATE_FILE).exists():
            raise ClusterError(f"{directory} holds a cluster already; `deai cluster down` it")
        anvil = AnvilProcess().start()
        assert anvil.proc is not None
        cluster = cls(
            directory,
            {"anvil": {"pid": anvil.proc.pid, "url": anvil.url}, "nodes": [], "config": {}},
        )
        cluster.save()
        try:
            chain = RpcChain(anvil.url)
            Ledger.deploy(chain, LedgerConfig(min_stake=config.stake_wei)).deployment.save(
                directory / "deployment.json"
            )
            funder = chain.accounts[0]
            for i in range(config.nodes):
                cluster.nodes.append(cluster._write_node(i, config, chain, funder))
            cluster.save()
            for i in range(config.nodes):
                cluster.start_node(i)
            cluster.wait_healthy(config.startup_timeout_s)
        except BaseException:
            cluster.down()
            raise
        return cluster

    def _write_node(
        self, i: int, config: ClusterConfig, chain: RpcChain, funder: str
    ) -> dict[str, Any]:
        ndir = self.dir / f"node-{i}"
        ndir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_hex(16)
        pw_file = ndir / "password.txt"
        pw_file.write_text(password)
        pw_file.chmod(0o600)
        address = create_keystore(ndir / "key.json", password, kdf_work=FAST_KDF_WORK)
        tx = chain.w3.eth.send_transaction(
            {"from": funder, "to": Web3.to_checksum_address(address), "value": Wei(config.fund_wei)}
        )
        chain.w3.eth.wait_for_transaction_receipt(tx)
        port = free_port()
        role = config.role(i)
        providers = config.nodes - 1 - config.validators
        index = max(0, i - 1 - config.validators)
        faults = "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.faults.get(i, {}).items())
        (ndir / "node.toml").write_text(
            f"""# written by `deai cluster up`
[node]
name = "node-{i}"
host = "127.0.0.1"
port = {port}
data_dir = "data"
keystore = "key.json"
password_file = "password.txt"
roles = ["{role}"]
send_retry_s = {config.round_send_retry_s}

[chain]
rpc_url = "{self.rpc_url}"
deployment = "../deployment.json"
stake_wei = {config.stake_of(i)}

[data]
dataset = "{config.dataset}"
partition = "{config.partition}"
seed = {config.seed}
shards = {max(1, providers)}
index = {index if role == "provider" else 0}

[faults]
{faults}"""
        )
        return {
            "index": i, "name": f"node-{i}", "role": role, "address": address, "port": port,
            "url": f"http://127.0.0.1:{port}", "config": str(ndir / "node.toml"), "pid": None,
        }  # fmt: skip

    # ------------------------------------------------------------ processes
    def start_node(self, i: int) -> None:
        """Start (or restart) node ``i``'s daemon process."""
        node = self.nodes[i]
        log = open(self.dir / f"node-{i}" / "node.log", "ab")  # noqa: SIM115 - child owns it
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "deai.node.daemon", "--config", node["config"]],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
        log.close()
        self.procs[i] = proc
        node["pid"] = proc.pid
        self.save()

    def wait_healthy(self, timeout_s: float = 120.0, indices: list[int] | None = None) -> None:
        end = time.monotonic() + timeout_s
        for i in indices if indices is not None else range(len(self.nodes)):
            client = self.client(i)
            try:
                while True:
                    proc = self.procs.get(i)
                    if proc is not None and proc.poll() is not None:
                        raise ClusterError(
                            f"node {i} exited with {proc.returncode}; see "
                            f"{self.dir / f'node-{i}' / 'node.log'}"
                        )
                    try:
                        client.health()
                        break
                    except Exception:  # not up yet: connection refused, timeouts
                        if time.monotonic() > end:
                            raise ClusterError(
                                f"node {i} not healthy after {timeout_s} s"
                            ) from None
                        time.sleep(0.2)
            finally:
                client.close()

    def kill(self, i: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to node ``i`` (SIGKILL: a crash; SIGTERM: a graceful stop)."""
        pid = self.nodes[i]["pid"]
        if pid is not None and _alive(pid, "deai.node.daemon"):
            _signal_group(pid, sig)

    def stop_node(self, i: int, grace_s: float = 15.0) -> int | None:
        """SIGTERM node ``i``, SIGKILL it after ``grace_s``; its exit code if it was ours."""
        pid = self.nodes[i]["pid"]
        proc = self.procs.pop(i, None)
        self.nodes[i]["pid"] = None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            self._stop_restarted(i, grace_s)
            return proc.returncode
        if pid is not None and _alive(pid, "deai.node.daemon"):
            _signal_group(pid, signal.SIGTERM)
            if not _wait_gone(pid, "deai.node.daemon", grace_s):
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, "deai.node.daemon", 5.0)
        self._stop_restarted(i, grace_s)
        return None

    def _stop_restarted(self, i: int, grace_s: float) -> None:
        """A node restarted by hand (``deai node start``) is found by its pid file."""
        pid_file = self.dir / f"node-{i}" / "data" / "node.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        needle = f"node-{i}"  # its command line names its config (cmdline check: no reuse)
        if pid == os.getpid() or not _alive(pid, needle):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, needle, grace_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, needle, 5.0)

    def down(self) -> dict[str, int | None]:
        """Stop every node (gracefully if it can), then anvil; return node exit codes."""
        codes = {self.nodes[i]["name"]: self.stop_node(i) for i in range(len(self.nodes))}
        pid = self.state["anvil"]["pid"]
        if pid and _alive(pid, "anvil"):
            _signal_group(pid, signal.SIGTERM)
            if not _wait_gone(pid, "anvil", 5.0):
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, "anvil", 5.0)
        self.state["anvil"]["pid"] = None
        (self.dir / STATE_FILE).unlink(missing_ok=True)
        return codes

    def status(self) -> list[dict[str, Any]]:
        out = []
        for i, node in enumerate(self.nodes):
            client = self.client(i)
            try:
                health = client.health()["status"]
            except Exception as e:  # down, refusing, timing out
                health = f"down ({type(e).__name__})"
            finally:
                client.close()
            out.append({**node, "health": health})
        return out


class DeadlineSkipper(threading.Thread):
    """For tests and benchmarks on a local cluster: moves anvil's clock to a round's
    deadline once nothing but the deadline can change the round, instead of sleeping
    through windows of at least ``MIN_PERIOD`` (300 s). That is: in the reveal window,
    every member that committed has revealed (the rest never committed, so cannot); or
    the only members still to act are ``absent`` ones (a crashed node), and have been
    for ``grace_s`` (a restarting member gets that long to come back and act). What the
    nodes see is what they would see after the wait."""

    def __init__(self, cluster: Cluster, chain_job: int, absent: set[str], grace_s: float) -> None:
        super().__init__(daemon=True)
        self.ledger = cluster.ledger()
        self.job, self.absent, self.grace_s = chain_job, {a.lower() for a in absent}, grace_s
        self.stop = threading.Event()
        self.skips: list[tuple[int, str, int]] = []  # (round, window, seconds skipped)
        self._since: dict[tuple[int, str], float] = {}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self._tick()
            except Exception:  # a read racing a finalize: look again next second
                continue

    def _tick(self) -> None:
        rv = self.ledger.round(self.job)
        if not rv.drawn:
            return
        committee = [a.lower() for a in self.ledger.committee(self.job)]
        now = self.ledger.now()
        if now < rv.commit_deadline:
            waiting = {committee[i] for i in range(rv.size) if i not in rv.committed}
            window, deadline = "commit", rv.commit_deadline
            if not waiting:
                return  # every member committed: the reveal opens now
        elif now < rv.reveal_deadline:
            if len(rv.revealed) == rv.size:
                return  # every member revealed: anyone finalizes now
            waiting = {committee[i] for i in rv.committed if i not in rv.revealed}
            window, deadline = "reveal", rv.reveal_deadline
        else:
            return
        if waiting:  # empty: only members that never committed are missing (cannot act)
            if not waiting <= self.absent:
                return
            first = self._since.setdefault((rv.index, window), time.monotonic())
            if time.monotonic() - first < self.grace_s:
                return
        self.ledger.chain.advance_time(deadline - now + 1)
        self.skips.append((rv.index, window, deadline - now + 1))
