"""A node's view of the chain: its :class:`ChainLink` (a Ledger signing with the node
key), and what settlement runs on: one :class:`Lane` (worker thread) per job and the
ledger with this account's transactions serialized (:class:`LockedWrites`).

Every ``ChainLink`` method blocks (JSON-RPC, 10 s timeout per call); call it from a
worker thread, never the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.ledger.chain import RpcChain
from deai.ledger.client import Ledger
from deai.ledger.types import Deployment
from deai.ledger.types import Role as ChainRole
from deai.node.runtime import NodeRuntime


class ChainLink:
    """This node's view of the chain: a :class:`Ledger` that signs with the node key.

    Every method blocks (JSON-RPC); call it from a worker thread, never the event loop.
    """

    def __init__(self, rpc_url: str, deployment: Deployment, key: bytes) -> None:
        self.chain = RpcChain(rpc_url, timeout_s=10.0)  # a stalled chain fails a call fast
        # a fixed gas limit after a dry run (which yields revert reasons): gas estimates of
        # finalize_round proved too tight on anvil once (it opens the next round and calls
        # the Registry); only the gas used is paid
        self.chain.fixed_gas = 3_000_000
        self.ledger = Ledger(self.chain, deployment)
        self.address = self.ledger.add_key("0x" + key.hex())
        self.tx_lock = threading.Lock()  # one transaction at a time from this account

    def ensure_registered(self, endpoint: str, roles: ChainRole, stake_wei: int) -> None:
        """Join the Registry, or update the endpoint and roles if they changed."""
        with self.tx_lock:
            view = self.ledger.node(self.address)
            if view.roles == 0:
                self.ledger.register(self.address, stake_wei, endpoint, roles)
            elif view.endpoint != endpoint or view.roles != roles:
                self.ledger.update_node(self.address, endpoint, roles)

    def endpoint(self, address: str) -> str | None:
        view = self.ledger.node(address)
        return view.endpoint or None if view.roles else None

    def members(self, role: ChainRole) -> list[str]:
        """Registered nodes holding ``role`` with at least the minimum stake, sorted by
        address (so the same job file names the same parties in the same order)."""
        min_stake = self.ledger.min_stake()
        seen = dict.fromkeys(str(e.args["node"]) for e in self.ledger.events("Joined"))
        out = []
        for addr in seen:
            view = self.ledger.node(addr)
            if view.roles & role and view.stake >= min_stake:
                out.append(view.address)
        return sorted(out, key=str.lower)

    def create_job(self, spec: JobSpec) -> int:
        settle = spec.settlement
        assert settle is not None
        with self.tx_lock:
            return self.ledger.create_job(
                self.address,
                budget=settle.budget_wei,
                spec_hash=bytes.fromhex(spec.spec_hash()),
                rounds=spec.rounds,
                committee_size=settle.committee,  # seats: the contract caps them by stake
                commit_period=settle.commit_period_s,
                reveal_period=settle.reveal_period_s,
                claim_period=settle.claim_period_s,
            )

    def find_job(self, spec: JobSpec) -> int | None:
        """The chain job escrowed by ``spec.requester`` for exactly this spec's hash."""
        found = self.find_job_block(spec)
        return None if found is None else found[0]

    def find_job_block(self, spec: JobSpec) -> tuple[int, int] | None:
        """That chain job and the block it was created in: the floor of every event scan
        of its settlement (nothing of the job happened before it)."""
        want = bytes.fromhex(spec.spec_hash())
        for e in self.ledger.events("JobCreated", filters={"requester": spec.requester}):
            if bytes(e.args["spec_hash"]) == want:
                return int(e.args["job_id"]), int(e.block)
        return None


@dataclass
class Prepared:
    """What a validator needs before it can take a job: its chain job and the data."""

    chain_id: int | None
    validation: Dataset | None
    error: str | None = None  # why the job cannot be taken (the validator refuses it)
    round_budget: int = 0  # wei per round (read from the chain while preparing)
    start_block: int | None = None  # the block the chain job was created in


class Lane:
    """A job's own settlement context: the runtime's, with a worker thread of its own for
    chain steps, so a chain call that hangs for one job never delays another's."""

    def __init__(self, ctx: NodeRuntime, name: str) -> None:
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"deai-settle-{name}")

    def now(self) -> float:
        return self.ctx.now()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.ctx.call_later(delay_s, fn)

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return self.ctx.secret_bytes(label, n)

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        self.ctx.offload(fn, done, pool=self.pool)


class LockedWrites:
    """The ledger for settlement lanes: reads run in parallel, transactions from this
    node's account one at a time (the account nonce is read per transaction)."""

    def __init__(self, link: ChainLink) -> None:
        self.link = link
        self.ledger = link.ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def commit(self, *args: Any) -> None:
        with self.link.tx_lock:
            self.ledger.commit(*args)

    def reveal(self, *args: Any) -> None:
        with self.link.tx_lock:
            self.ledger.reveal(*args)

    def finalize_round(self, *args: Any) -> None:
        with self.link.tx_lock:
            self.ledger.finalize_round(*args)
