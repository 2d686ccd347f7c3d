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
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deai.errors import ChainError, ConfigError, DeaiError
from deai.job.spec import DataSchema, JobSpec, Parties
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.learning.partition import partition
from deai.ledger.chain import RpcChain
from deai.ledger.client import Ledger
from deai.ledger.types import Deployment, JobState
from deai.ledger.types import Role as ChainRole
from deai.node.base import NodeContext, open_spec
from deai.node.config import NodeConfig, NodeRole, load_node_config, parse_job
from deai.node.faults import Fault, FaultyBehaviour
from deai.node.hooks import Honest, RoundOutcome
from deai.node.keystore import load_key
from deai.node.messages import Message, OpenJob, decode, encode
from deai.node.payouts import RoundPayouts
from deai.node.roles import Provider, Requester, Role, Validator
from deai.node.runtime import NodeRuntime, PeerDirectory, Poster, RuntimeConfig
from deai.node.secagg import install as install_secagg
from deai.node.settlement import CommitteeMember
from deai.node.signing import Signer
from deai.node.store import ArtifactStore
from deai.node.validator import JobPending

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
                committee_size=min(settle.committee, len(spec.validators)),
                commit_period=settle.commit_period_s,
                reveal_period=settle.reveal_period_s,
                claim_period=settle.claim_period_s,
            )

    def find_job(self, spec: JobSpec) -> int | None:
        """The chain job escrowed by ``spec.requester`` for exactly this spec's hash."""
        want = bytes.fromhex(spec.spec_hash())
        for e in self.ledger.events("JobCreated", filters={"requester": spec.requester}):
            if bytes(e.args["spec_hash"]) == want:
                return int(e.args["job_id"])
        return None


@dataclass
class _Prepared:
    """What a validator needs before it can take a job: its chain job and the data."""

    chain_id: int | None
    validation: Dataset | None
    error: str | None = None  # why the job cannot be taken (the validator refuses it)


# ----------------------------------------------------------------------------- jobs
@dataclass
class _Submitted:
    spec: JobSpec
    role: Requester
    chain_id: int | None
    submitted_at: float


class JobDesk:
    """A requester node's jobs: bind the spec, escrow on chain, open the job."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.jobs: dict[str, _Submitted] = {}

    def bind(self, spec: JobSpec, nonce: str) -> JobSpec:
        """The spec with this node's validation data schema, the parties (the spec's, or
        every registered provider and validator, sorted by address) and the nonce."""
        validation = self.node.validation
        if validation is None or len(validation) == 0:
            raise ConfigError("this requester node has no validation data ([data] in node.toml)")
        digest = self.node.store.put(validation.to_bytes())
        schema = DataSchema(
            input_shape=validation.input_shape,
            num_classes=validation.num_classes,
            validation=digest,
        )
        parties = spec.parties
        if parties is None:
            link = self.node.link
            if link is None:
                raise ConfigError("job: list the parties (this node has no chain to find them)")
            providers = link.members(ChainRole.PROVIDER)
            validators = link.members(ChainRole.VALIDATOR)
            if not providers or not validators:
                raise ConfigError("job: no registered providers or validators on the chain")
            parties = Parties(
                requester=self.node.address,
                providers=tuple(providers),
                validators=tuple(validators),
            )
        elif parties.requester.lower() != self.node.address.lower():
            raise ConfigError(f"parties.requester must be this node ({self.node.address})")
        return spec.bind(data=schema, parties=parties, nonce=nonce)

    async def submit(self, body: str) -> dict[str, Any]:
        spec, nonce = _parse_submission(body)
        bound = await asyncio.to_thread(self.bind, spec, nonce)
        existing = self.jobs.get(bound.job_id)
        if existing is not None:  # the same spec and nonce: the same job, never paid twice
            return self._receipt(existing, again=True)
        link = self.node.link
        chain_id = None
        if bound.settlement is not None:
            if link is None:
                raise ConfigError("job: [settlement] needs a node with a [chain] section")
            chain_id = await asyncio.to_thread(link.find_job, bound)
            if chain_id is None:
                chain_id = await asyncio.to_thread(link.create_job, bound)
        role = Requester(self.node.address, bound)
        job = _Submitted(bound, role, chain_id, time.time())
        self.jobs[bound.job_id] = job
        self.node.runtime.add_role(role)  # starts it: OpenJob goes to every party
        return self._receipt(job)

    def _receipt(self, job: _Submitted, again: bool = False) -> dict[str, Any]:
        return {
            "job_id": job.spec.job_id,
            "chain_job_id": job.chain_id,
            "spec_hash": job.spec.spec_hash(),
            "nonce": job.spec.nonce,
            "already_submitted": again,
        }

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


def _parse_submission(body: str) -> tuple[JobSpec, str]:
    """A submitted job: JSON ``{"spec": {...}, "nonce": ...}`` or a job TOML file."""
    import tomllib

    nonce: str | None = None
    text = body.strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"submitted job: not valid JSON: {e}") from None
        if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
            raise ConfigError('submitted job: expected {"spec": {...}, "nonce": "..."}')
        spec = parse_job(d["spec"], "submitted job")
        nonce = d.get("nonce")
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"submitted job: not valid TOML: {e}") from None
        spec = parse_job(data, "submitted job")
    if nonce is None:
        nonce = spec.nonce or secrets.token_hex(8)
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise ConfigError("submitted job: nonce must be a string of 1 to 64 characters")
    return spec, nonce


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
        self.peers = peers
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
        self.desk: JobDesk | None = JobDesk(self) if config.has(NodeRole.REQUESTER) else None
        self.train: Dataset | None = None
        self.validation: Dataset | None = None
        self.prepared: dict[str, _Prepared] = {}
        self.members: dict[str, CommitteeMember] = {}
        self._preparing: set[str] = set()
        self._build_roles()

    def _build_roles(self) -> None:
        cfg = self.config
        needs_data = any(cfg.has(r) for r in NodeRole)
        if needs_data:
            self.train, self.validation = node_data(cfg)
        if cfg.has(NodeRole.VALIDATOR):
            validator = Validator(
                self.address, self._validation_for, settlement=self._settlement_for
            )
            self.runtime.add_role(validator)
            for r in install_secagg(None, validator):
                self.runtime.add_role(r)
            self.runtime.hooks.append(self._prepare)
        if cfg.has(NodeRole.PROVIDER):
            assert self.train is not None
            name = cfg.faults.behaviour
            behaviour = Honest() if name == "honest" else FaultyBehaviour(Fault(name))
            provider = Provider(self.address, self.train, behaviour=behaviour)
            self.runtime.add_role(provider)
            for r in install_secagg(provider, None):
                self.runtime.add_role(r)
            self.runtime.hooks.append(self._journal)

    def role(self, kind: type[Role]) -> Role | None:
        return next((r for r in self.runtime.roles if isinstance(r, kind)), None)

    # -------------------------------------------------------- what a validator needs
    def _validation_for(self, spec: JobSpec) -> Dataset:
        prep = self.prepared.get(spec.job_id)
        if prep is None:
            raise JobPending(spec.job_id)
        if prep.validation is None:
            raise ConfigError(prep.error or "no validation data")
        return prep.validation

    def _settlement_for(
        self, spec: JobSpec, model: FlatModel, validation: Dataset, ctx: NodeContext
    ) -> CommitteeMember | None:
        prep = self.prepared.get(spec.job_id)
        if self.link is None or prep is None or prep.chain_id is None:
            return None
        view = self.link.ledger.job(prep.chain_id)  # one call, at job start
        poll = self.config.chain.poll_s if self.config.chain else 1.0
        member = CommitteeMember(
            ctx,
            self.link.ledger,
            prep.chain_id,
            self.address,
            RoundPayouts(spec, model, validation, view.round_budget),
            lambda node_id: node_id,  # deployed: a node id is its chain address
            spec.providers,
            poll_s=poll,
            on_error=lambda text: log.warning("%s", text),
        )
        self.members[spec.job_id] = member
        return member

    def _prepare(self, sender: str, msg: Message) -> None:
        """Runtime hook: before a validator takes a job, find its chain job and its
        validation data (local, or fetched from the requester by digest), off the loop;
        then hand the ``OpenJob`` to the roles again."""
        if not isinstance(msg, OpenJob) or msg.job_id in self.prepared:
            return
        if msg.job_id in self._preparing:
            return
        try:
            spec = open_spec(msg)
        except DeaiError:
            return
        if self.address not in spec.validators or sender != spec.requester:
            return
        self._preparing.add(msg.job_id)
        self.runtime._spawn(self._prepare_job(sender, msg, spec))

    async def _prepare_job(self, sender: str, msg: OpenJob, spec: JobSpec) -> None:
        try:
            validation = await self._fetch_validation(spec)
            chain_id = None
            if spec.settlement is not None and self.link is not None:
                chain_id = await asyncio.to_thread(self.link.find_job, spec)
                if chain_id is None:
                    log.warning("job %s: no escrow on chain for its spec hash", spec.job_id)
            self.prepared[spec.job_id] = _Prepared(chain_id, validation)
        except DeaiError as e:
            log.warning("job %s: cannot take it: %s", spec.job_id, e)
            self.prepared[spec.job_id] = _Prepared(None, None, str(e))
        finally:
            self._preparing.discard(spec.job_id)
        for role in self.runtime.roles:
            if isinstance(role, Validator):
                self.runtime._guarded(role.handle, sender, msg)

    async def _fetch_validation(self, spec: JobSpec) -> Dataset:
        want = spec.data_schema.validation
        local = self.validation
        if want is None:
            if local is None:
                raise ConfigError("no validation data on this node and none named by the spec")
            return local
        if local is not None and local.digest() == want:
            return local
        if not self.store.has(want):
            from deai.node.http import NodeClient

            url = await self.peers.url(spec.requester)
            if url is None:
                raise ConfigError(f"cannot reach requester {spec.requester} for its data")

            def fetch() -> bytes:
                client = NodeClient(url)
                try:
                    return client.fetch(want)
                finally:
                    client.close()

            self.store.put(await asyncio.to_thread(fetch))
        return Dataset.from_bytes(self.store.get(want))

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
                    for role in self.runtime.roles:
                        role.handle(str(entry["sender"]), msg)
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
        await self.runtime.start()
        self._replay_journal()
        log.info("node %s (%s) up at %s", self.config.node.name, self.address, self.config.node.url)

    async def shutdown(self) -> None:
        log.info("node %s shutting down", self.config.node.name)
        await self.runtime.close()

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
                        "stopped": v.stopped,
                    }
                    for j, v in validator.jobs.items()
                },
                "outcomes": [_outcome_json(o) for o in validator.outcomes],
                "rejections": [r.__dict__ for r in validator.rejections],
                "refusals": [r.__dict__ for r in validator.refusals],
                "settlements": {
                    j: [_duty_json(d) for d in m.duties] for j, m in self.members.items()
                },
                # what each provider can claim: the payouts of every settled round
                "payout_tables": {j: dict(m.settled_table) for j, m in self.members.items()},
            }
        provider = self.role(Provider)
        if isinstance(provider, Provider):
            out["provider"] = {
                "jobs": sorted(provider.jobs),
                "examples": provider.num_examples,
                "refusals": [r.__dict__ for r in provider.refusals],
            }
        if self.desk is not None:
            out["requester"] = {"jobs": sorted(self.desk.jobs)}
        return out


def _duty_json(d: Any) -> dict[str, Any]:
    return {
        "round": d.index + 1,
        "phase": str(d.phase),
        "member": d.member,
        "settled": d.settled,
        "round_payout": dict(d.paid),
        "total": sum(d.paid.values()) if d.settled else 0,
        "model_hash": d.model_hash,
        "slashed": list(d.slashed),
        "error": d.error,
    }


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
        "applied": o.applied,
        "note": o.note,
        "epsilon": o.epsilon,
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
