"""The node daemon: one deployed deai node (``deai node start`` / ``python -m deai.node.daemon``).

:class:`Node` assembles the pieces: the keystore identity, the artifact store, the
runtime (:mod:`deai.node.runtime`), the roles named in ``node.toml`` (the simulation's
roles, unchanged), and, when a ``[chain]`` section is present, the chain: registration
and discovery through the Registry (:class:`ChainLink`), on-chain settlement of every
round through the Jobs contract (:class:`ChainSettlement`), and job escrow for a
requester (:class:`JobDesk`). :func:`serve` runs it under uvicorn; SIGTERM or SIGINT
stops it gracefully (in-flight sends drain, the settlement worker finishes its current
transaction).

Resuming after a crash: a provider journals every job it accepted (the requester's signed
``OpenJob``) under ``data_dir/journal`` and replays the journal at start, so a provider
killed mid-round and restarted takes part in the next round's task. A validator's round
state is not journaled: a restarted validator forgets its open jobs (see docs/deployed.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deai.aggregation.registry import AggregatorConfig, build_aggregator
from deai.errors import ChainError, ConfigError, DeaiError
from deai.incentives.rewards import split_budget
from deai.learning.data import Dataset
from deai.learning.models import ModelConfig
from deai.learning.partition import partition
from deai.ledger.chain import RpcChain
from deai.ledger.client import Ledger
from deai.ledger.errors import Reverted
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import Deployment, JobState, RoundResult, result_commitment
from deai.ledger.types import Role as ChainRole
from deai.node.config import JobConfig, NodeConfig, NodeRole, load_node_config, parse_job_config
from deai.node.hooks import RoundOutcome
from deai.node.job import JobSpec, UpdatePolicy
from deai.node.keystore import load_key
from deai.node.messages import Message, OpenJob, decode, encode
from deai.node.roles import Provider, Requester, Role, Validator
from deai.node.runtime import NodeRuntime, PeerDirectory, Poster, RuntimeConfig
from deai.node.signing import Signer
from deai.node.store import ArtifactStore
from deai.sim.behaviours import build_behaviour
from deai.sim.runner import algorithm_spec

log = logging.getLogger("deai.node")


# ------------------------------------------------------------------------------ data
def node_data(cfg: NodeConfig) -> tuple[Dataset, Dataset]:
    """This node's private training shard and the requester's validation split."""
    d = cfg.data
    splits = d.load(d.seed)
    parts = partition(splits.train.y.numpy(), d.shards, d.partition_config(), d.seed)
    return splits.train.subset(parts[d.index]), splits.validation


# ----------------------------------------------------------------------------- chain
class ChainLink:
    """This node's view of the chain: a :class:`Ledger` that signs with the node key.

    Every method blocks (JSON-RPC); call it from a worker thread, never the event loop.
    """

    def __init__(self, rpc_url: str, deployment: Deployment, key: bytes) -> None:
        self.chain = RpcChain(rpc_url)
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
        """Registered nodes holding ``role`` with at least the minimum stake, join order."""
        min_stake = self.ledger.min_stake()
        seen = dict.fromkeys(str(e.args["node"]) for e in self.ledger.events("Joined"))
        out = []
        for addr in seen:
            view = self.ledger.node(addr)
            if view.roles & role and view.stake >= min_stake:
                out.append(view.address)
        return out

    def create_job(self, spec: JobSpec, cfg: JobConfig) -> int:
        with self.tx_lock:
            return self.ledger.create_job(
                self.address,
                budget=cfg.budget_wei,
                spec_hash=bytes.fromhex(spec.spec_hash()),
                rounds=spec.rounds,
                committee_size=len(spec.validators),
                commit_period=cfg.commit_period_s,
                reveal_period=cfg.reveal_period_s,
                claim_period=cfg.claim_period_s,
            )

    def find_job(self, spec: JobSpec) -> int | None:
        """The chain job escrowed by ``spec.requester`` for exactly this spec's hash."""
        want = bytes.fromhex(spec.spec_hash())
        for e in self.ledger.events("JobCreated", filters={"requester": spec.requester}):
            if bytes(e.args["spec_hash"]) == want:
                return int(e.args["job_id"])
        return None


@dataclass
class _ChainJob:
    chain_id: int
    spec: JobSpec
    round_budget: int
    cumulative: dict[str, int] = field(default_factory=dict)


class ChainSettlement:
    """A validator's :class:`~deai.node.hooks.Settlement` on the Jobs contract.

    Per finished round: split the round budget among the accepted updates the aggregator
    kept, in proportion to their aggregation weight (capped example counts), exactly in
    wei (:func:`deai.incentives.rewards.split_budget`); add it to every provider's
    cumulative payout; build the payout Merkle tree; commit to (model hash, root, total),
    reveal once the committee has committed, finalize once it has revealed. A provider
    that sent nothing, or whose update was rejected or excluded, earns nothing that
    round. Chain calls run on one worker thread in round order, off the event loop.
    """

    def __init__(self, link: ChainLink, store: ArtifactStore, poll_s: float = 0.2) -> None:
        self.link = link
        self.store = store
        self.poll_s = poll_s
        self.jobs: dict[str, _ChainJob] = {}
        self.records: list[dict[str, Any]] = []  # one per settled (or failed) round
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="deai-settle", daemon=True)
        self._thread.start()

    # called on the event loop ------------------------------------------------------
    def note_job(self, sender: str, msg: Message) -> None:
        """Runtime hook: learn the chain job of every ``OpenJob`` this node receives."""
        if not isinstance(msg, OpenJob) or msg.job_id in self.jobs:
            return
        try:
            spec = JobSpec.from_json(msg.spec_json)
        except DeaiError:
            return
        if spec.spec_hash() == msg.spec_hash and sender == spec.requester:
            self._queue.put(lambda: self._attach(spec))

    def settle(self, outcome: RoundOutcome) -> None:
        self._queue.put(lambda: self._settle(outcome))

    def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    # worker thread ----------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("settlement step failed")

    def _attach(self, spec: JobSpec) -> None:
        chain_id = self.link.find_job(spec)
        if chain_id is None:
            log.warning("job %s has no escrow on chain; it will not be settled", spec.job_id)
            return
        view = self.link.ledger.job(chain_id)
        self.jobs[spec.job_id] = _ChainJob(chain_id, spec, view.round_budget)

    def _wait(self, until: Callable[[], bool], deadline: float) -> None:
        while not until() and time.time() < deadline:
            time.sleep(self.poll_s)

    def _settle(self, outcome: RoundOutcome) -> None:
        t0 = time.perf_counter()
        job = self.jobs.get(outcome.job_id)
        record: dict[str, Any] = {"job_id": outcome.job_id, "round": outcome.round}
        self.records.append(record)
        if job is None:
            record["error"] = "job not escrowed on chain"
            return
        ledger, me, cid, idx = self.link.ledger, self.link.address, job.chain_id, outcome.round - 1
        record["chain_job_id"] = cid
        self._wait(lambda: ledger.round(cid).index >= idx, time.time() + 60)
        rv = ledger.round(cid)
        if rv.index != idx or me not in ledger.committee(cid):
            record["error"] = f"not a member of chain round {idx} (open round {rv.index})"
            return
        kept = [i for i, a in enumerate(outcome.accepted) if a not in outcome.excluded]
        pay = split_budget(
            [outcome.weights[i] if i in kept else 0.0 for i in range(len(outcome.accepted))],
            job.round_budget,
            excluded=[i for i in range(len(outcome.accepted)) if i not in kept],
        )
        for addr, amount in zip(outcome.accepted, pay.amounts, strict=True):
            job.cumulative[addr] = job.cumulative.get(addr, 0) + amount
        table = {p: job.cumulative.get(p, 0) for p in job.spec.providers}
        tree = PayoutTree(cid, table)
        result = RoundResult(bytes.fromhex(outcome.model_hash), tree.root, pay.total)
        salt = secrets.token_bytes(32)
        with self.link.tx_lock:
            ledger.commit(me, cid, idx, result_commitment(cid, idx, me, result, salt))
        self._wait(lambda: len(ledger.round(cid).committed) == rv.size, rv.commit_deadline + 1)
        with self.link.tx_lock:
            ledger.reveal(me, cid, idx, result, salt)
        self._wait(lambda: len(ledger.round(cid).revealed) == rv.size, rv.reveal_deadline + 1)
        try:
            with self.link.tx_lock:
                ledger.finalize_round(me, cid, idx)
        except Reverted as e:  # another member finalized first
            if "wrong round" not in e.reason and "not open" not in e.reason:
                raise
        digest = self.store.put(json.dumps({"job": cid, "payouts": table}, sort_keys=True).encode())
        record.update(
            round_payout=dict(zip(outcome.accepted, pay.amounts, strict=True)),
            cumulative=table,
            total=pay.total,
            root="0x" + tree.root.hex(),
            payouts_artifact=digest,
            model_hash=outcome.model_hash,
            chain_s=time.perf_counter() - t0,
            settled_at=time.time(),
        )


# ----------------------------------------------------------------------------- jobs
@dataclass
class _Submitted:
    spec: JobSpec
    role: Requester
    chain_id: int | None
    submitted_at: float


class JobDesk:
    """A requester node's jobs: escrow on chain, then the ``Requester`` role opens them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.jobs: dict[str, _Submitted] = {}

    def build_spec(self, cfg: JobConfig) -> JobSpec:
        link = self.node.link
        providers = list(cfg.providers)
        validators = list(cfg.validators)
        if not providers or not validators:
            if link is None:
                raise ConfigError("job: list providers and validators (this node has no chain)")
            providers = providers or link.members(ChainRole.PROVIDER)
            validators = validators or link.members(ChainRole.VALIDATOR)
        if not providers or not validators:
            raise ConfigError("job: no registered providers or validators found on the chain")
        splits = cfg.data.load(cfg.seed)
        return JobSpec(
            job_id=f"{cfg.name}-{secrets.token_hex(4)}",
            rounds=cfg.rounds,
            seed=cfg.seed,
            algorithm=algorithm_spec(cfg.algorithm),
            model=ModelConfig(
                name=cfg.model.name, hidden=tuple(cfg.model.hidden), channels=cfg.model.channels
            ),
            input_shape=splits.train.input_shape,
            num_classes=splits.train.num_classes,
            requester=self.node.address,
            providers=tuple(providers),
            validators=tuple(validators),
            round_timeout_s=cfg.round_timeout_s,
            policy=UpdatePolicy(cfg.validation.max_update_norm, cfg.validation.max_examples),
        )

    async def submit(self, text: str) -> dict[str, Any]:
        import tomllib

        try:
            cfg = parse_job_config(tomllib.loads(text), "submitted job")
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"submitted job: not valid TOML: {e}") from None
        spec = await asyncio.to_thread(self.build_spec, cfg)
        link = self.node.link
        chain_id = await asyncio.to_thread(link.create_job, spec, cfg) if link else None
        role = Requester(self.node.address, spec)
        self.jobs[spec.job_id] = _Submitted(spec, role, chain_id, time.time())
        self.node.runtime.add_role(role)  # starts it: OpenJob goes to every party
        return {"job_id": spec.job_id, "chain_job_id": chain_id, "spec_hash": spec.spec_hash()}

    def status(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        out: dict[str, Any] = {
            "job_id": job_id,
            "spec_hash": job.spec.spec_hash(),
            "chain_job_id": job.chain_id,
            "rounds": job.spec.rounds,
            "providers": list(job.spec.providers),
            "validators": list(job.spec.validators),
            "submitted_at": job.submitted_at,
            "done": job.role.result is not None,
            "model_hash": job.role.result_hash,
            "spec_json": job.spec.to_json(),
        }
        link = self.node.link
        if link is not None and job.chain_id is not None:
            try:
                v = link.ledger.job(job.chain_id)
                out["chain"] = {
                    "state": JobState(v.state).name,
                    "deposit": v.deposit,
                    "payable_total": v.payable_total,
                    "claimed_total": v.claimed_total,
                    "refunded": v.refunded,
                    "model_hash": "0x" + v.model_hash.hex(),
                    "root": "0x" + v.root.hex(),
                    "round": link.ledger.round(job.chain_id).index,
                }
            except ChainError as e:
                out["chain"] = {"error": str(e)}
        return out


# ----------------------------------------------------------------------------- node
class Node:
    """One deployed node (implements :class:`deai.node.http.NodeApi`)."""

    def __init__(
        self,
        config: NodeConfig,
        key: bytes,
        link: ChainLink | None = None,
        poster: Poster | None = None,
    ) -> None:
        self.config = config
        self.signer = Signer(key)
        self.address = self.signer.address
        n = config.node
        self.max_body_bytes = n.max_body_bytes
        self.data_dir = config.path(n.data_dir)
        self.store = ArtifactStore(self.data_dir / "artifacts", max_bytes=n.max_body_bytes)
        self.link = link
        peers = PeerDirectory(config.peers, link.endpoint if link else None)
        self.runtime = NodeRuntime(
            self.signer,
            peers,
            self.store,
            RuntimeConfig(
                strike_limit=n.strike_limit,
                send_timeout_s=n.send_timeout_s,
                send_retry_s=n.send_retry_s,
                replay_window_s=n.replay_window_s,
                train_delay_s=config.faults.train_delay_s,
                torch_threads=n.torch_threads,
            ),
            poster,
        )
        self.settlement: ChainSettlement | None = None
        self.desk: JobDesk | None = JobDesk(self) if config.has(NodeRole.REQUESTER) else None
        self._build_roles()

    def _build_roles(self) -> None:
        cfg = self.config
        if not (cfg.has(NodeRole.PROVIDER) or cfg.has(NodeRole.VALIDATOR)):
            return
        train, validation = node_data(cfg)
        if cfg.has(NodeRole.VALIDATOR):
            if self.link is not None:
                self.settlement = ChainSettlement(
                    self.link, self.store, cfg.chain.poll_s if cfg.chain else 0.2
                )
                self.runtime.hooks.append(self.settlement.note_job)
            self.runtime.add_role(
                Validator(
                    self.address,
                    validation,
                    aggregator=build_aggregator(cfg.validator.aggregator, AggregatorConfig()),
                    settlement=self.settlement,
                )
            )
        if cfg.has(NodeRole.PROVIDER):
            behaviour = build_behaviour(cfg.faults.behaviour, cfg.data.seed + cfg.data.index)
            self.runtime.add_role(Provider(self.address, train, behaviour=behaviour))
            self.runtime.hooks.append(self._journal)

    def role(self, kind: type[Role]) -> Role | None:
        return next((r for r in self.runtime.roles if isinstance(r, kind)), None)

    # ------------------------------------------------------------------- journal
    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    def _journal(self, sender: str, msg: Message) -> None:
        if not isinstance(msg, OpenJob):
            return
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        path = self.journal_dir / f"{msg.spec_hash}.json"
        path.write_text(json.dumps({"sender": sender, "body": encode(msg).hex()}))

    def _replay_journal(self) -> None:
        provider = self.role(Provider)
        if provider is None or not self.journal_dir.is_dir():
            return
        for path in sorted(self.journal_dir.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                msg = decode(bytes.fromhex(entry["body"]))
                if (
                    isinstance(msg, OpenJob)
                    and not JobSpec.from_json(msg.spec_json).algorithm.gossip
                ):
                    provider.handle(str(entry["sender"]), msg)
                    log.info("resumed job %s from the journal", msg.job_id)
            except (OSError, ValueError, KeyError, DeaiError) as e:
                log.warning("skipping journal entry %s: %s", path.name, e)

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        if self.link is not None and self.config.chain is not None and self.config.chain.join:
            roles = ChainRole(0)
            for r in self.config.node.roles:
                roles |= r.chain_bit
            await asyncio.to_thread(
                self.link.ensure_registered,
                self.config.node.url,
                roles,
                self.config.chain.stake_wei,
            )
        self._replay_journal()
        await self.runtime.start()
        log.info("node %s (%s) up at %s", self.config.node.name, self.address, self.config.node.url)

    async def shutdown(self) -> None:
        log.info("node %s shutting down", self.config.node.name)
        await self.runtime.close()
        if self.settlement is not None:
            await asyncio.to_thread(self.settlement.close)

    # ---------------------------------------------------------------- NodeApi
    def receive(self, headers: Any, body: bytes) -> object:
        return self.runtime.receive(headers, body)

    def authenticate(self, headers: Any, body: bytes) -> str:
        return self.runtime.authenticate(headers, body)

    async def submit_job(self, sender: str, text: str) -> dict[str, Any]:
        if self.desk is None:
            raise ConfigError("this node has no requester role")
        return await self.desk.submit(text)

    def job_status(self, job_id: str) -> dict[str, Any] | None:
        return self.desk.status(job_id) if self.desk is not None else None

    def status(self) -> dict[str, Any]:
        rt = self.runtime
        out: dict[str, Any] = {
            "name": self.config.node.name,
            "address": self.address,
            "url": self.config.node.url,
            "roles": [str(r) for r in self.config.node.roles],
            "uptime_s": time.time() - rt.started_at,
            "metrics": rt.metrics.as_dict(),
            "strikes": dict(rt.strikes),
            "artifacts": len(self.store.digests()),
        }
        validator = self.role(Validator)
        if isinstance(validator, Validator):
            out["validator"] = {
                "jobs": {
                    j: {
                        "round": v.round.round if v.round else 0,
                        "closed": bool(v.round and v.round.closed),
                        "done": v.done,
                    }
                    for j, v in validator.jobs.items()
                },
                "outcomes": [_outcome_json(o) for o in validator.outcomes],
                "rejections": [r.__dict__ for r in validator.rejections],
                "settlements": list(self.settlement.records) if self.settlement else [],
            }
        provider = self.role(Provider)
        if isinstance(provider, Provider):
            out["provider"] = {"jobs": sorted(provider.jobs), "examples": provider.num_examples}
        if self.desk is not None:
            out["requester"] = {"jobs": sorted(self.desk.jobs)}
        return out


def _outcome_json(o: RoundOutcome) -> dict[str, Any]:
    return {
        "job_id": o.job_id,
        "round": o.round,
        "model_hash": o.model_hash,
        "participants": list(o.participants),
        "accepted": list(o.accepted),
        "excluded": list(o.excluded),
        "missing": list(o.missing),
        "rejections": [r.__dict__ for r in o.rejections],
        "weights": list(o.weights),
        "started_s": o.started_s,
        "closed_s": o.closed_s,
    }


# ---------------------------------------------------------------------------- serve
def build_node(config: NodeConfig) -> Node:
    """Unlock the keystore, connect to the chain (if configured) and build the node."""
    key = load_key(config.path(config.node.keystore), config.password().read())
    link = None
    if config.chain is not None:
        deployment = Deployment.load(config.path(config.chain.deployment))
        link = ChainLink(config.chain.rpc_url, deployment, key)
    torch.set_num_threads(config.node.torch_threads)
    return Node(config, key, link)


def serve(node: Node) -> None:
    """Run the node's HTTP server until SIGTERM/SIGINT (uvicorn handles both gracefully)."""
    import uvicorn

    from deai.node.http import create_app

    n = node.config.node
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node),
            host=n.host,
            port=n.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler
    # that was installed before it ran; a no-op handler here makes a graceful stop exit 0
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if not server.started:
        raise ConfigError(f"node {n.name}: could not serve on {n.host}:{n.port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deai.node.daemon")
    parser.add_argument("--config", required=True, type=Path, help="node.toml")
    parser.add_argument("--log-level", default=os.environ.get("DEAI_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        serve(build_node(load_node_config(args.config)))
    except DeaiError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
