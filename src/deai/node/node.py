"""One deployed deai node: :class:`Node` (run as a process by :mod:`deai.node.daemon`).

:class:`Node` assembles the pieces: the keystore identity, the artifact store, the
runtime (:mod:`deai.node.runtime`), the roles named in ``node.toml`` (the simulation's
roles, unchanged), and, when a ``[chain]`` section is present, the chain: registration
and discovery through the Registry (:class:`ChainLink`), on-chain settlement of every
round through the Jobs contract (:class:`~deai.node.settlement.CommitteeMember`, one
lane per job), and job escrow for a requester (:class:`~deai.node.desk.JobDesk`).
:func:`deai.node.daemon.serve` runs it under uvicorn; SIGTERM or SIGINT stops it
gracefully (in-flight sends drain, the settlement worker finishes its current
transaction).

Resuming after a crash: a node journals every job it takes part in (the requester's
signed ``OpenJob``) under ``data_dir/journal``; a validator also journals its model after
every round it closed and its settlement duties (phase, committed result, salt). At start
the journal (:mod:`deai.node.journal`) is replayed: a provider takes part from the next
task, a validator resumes after its last closed round and reveals what it committed
before the crash.

Admission (:mod:`deai.node.admission`): only parties of jobs this node knows (with the
minimum stake, when there is a chain) may send full-size bodies or store artifacts;
settlement runs one lane (worker thread) per job, so a job whose chain calls hang never
delays another; chain reads for reports run off the loop with timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from deai.errors import ConfigError, DeaiError
from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.learning.partition import partition
from deai.ledger.types import Role as ChainRole
from deai.node.base import NodeContext, open_spec
from deai.node.chainlink import ChainLink, Lane, LockedWrites, Prepared
from deai.node.config import NodeConfig, NodeRole
from deai.node.desk import JobDesk
from deai.node.faults import Fault, FaultyBehaviour
from deai.node.hooks import Honest
from deai.node.journal import NodeJournal
from deai.node.messages import Message, OpenJob
from deai.node.payouts import RoundPayouts
from deai.node.reports import RoundLog, outcome_json
from deai.node.roles import Provider, Role, Validator
from deai.node.runtime import NodeRuntime, PeerDirectory, Poster, RuntimeConfig
from deai.node.secagg import install as install_secagg
from deai.node.settlement import CommitteeMember, duty_json
from deai.node.signing import Envelope, RejectCode, Rejected, Signer, crypto_backend
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
        if crypto_backend() != "CoinCurveECCBackend":
            raise ConfigError(
                "eth-keys runs without the compiled coincurve backend (12 ms per signature "
                "check on the event loop): `pip install coincurve`"
            )
        self.data_dir = config.path(n.data_dir)
        self.store = ArtifactStore(self.data_dir / "artifacts", max_bytes=n.max_body_bytes)
        self.journal = NodeJournal(self.data_dir / "journal", self.store)
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
                max_body_bytes=n.max_body_bytes,
                admission=config.admission.build(),
            ),
            poster,
        )
        self.runtime.admission.is_party = self.is_party
        self.runtime.knows_job = self.knows_job
        self.parties: set[str] = {self.address.lower()}  # keys of jobs this node takes part in
        self.unstaked: set[str] = set()  # parties the chain shows without the minimum stake
        self.known_jobs: set[str] = set()
        self.round_log = RoundLog(self)
        self._lanes: dict[str, Lane] = {}
        self.desk: JobDesk | None = JobDesk(self) if config.has(NodeRole.REQUESTER) else None
        self.train: Dataset | None = None
        self.validation: Dataset | None = None
        self.prepared: dict[str, Prepared] = {}
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
                self.address,
                self._validation_for,
                settlement=self._settlement_for,
                observer=self.round_log,
                resume=self._resume_for,
            )
            self.runtime.add_role(validator)
            for r in install_secagg(None, validator):
                self.runtime.add_role(r)
            self.runtime.hooks.append(self._prepare)
        self.runtime.hooks.append(self._note_open)
        if cfg.has(NodeRole.VALIDATOR) and not cfg.has(NodeRole.PROVIDER):
            self.runtime.hooks.append(self._journal)
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
        poll = self.config.chain.poll_s if self.config.chain else 1.0
        lane = self._lanes.setdefault(spec.job_id, Lane(self.runtime, spec.job_id[:24]))
        member = CommitteeMember(
            lane,  # type: ignore[arg-type]  # the part of NodeContext settlement uses
            LockedWrites(self.link),
            prep.chain_id,
            self.address,
            RoundPayouts(spec, model, validation, prep.round_budget),
            lambda node_id: node_id,  # deployed: a node id is its chain address
            spec.providers,
            poll_s=poll,
            on_error=lambda text: log.warning("%s", text),
            journal=lambda duties: self._write_journal(spec, "settle", duties),
            start_block=prep.start_block,  # event scans from the job's creation on
            on_diverged=lambda: self._diverged(spec.job_id),
        )
        saved = self._read_journal(spec, "settle")
        if isinstance(saved, list) and saved:
            member.restore(saved)
            log.info(
                "job %s: resumed %d settlement duties from the journal", spec.job_id, len(saved)
            )
        self.members[spec.job_id] = member
        return member

    def _diverged(self, job_id: str) -> None:
        """A round this validator closed incomplete settled with another model: it
        abstains from the rest of the job (stops driving, delivers nothing)."""
        validator = self.role(Validator)
        if isinstance(validator, Validator):
            validator.abstain(job_id)

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
            chain_id, start_block = None, None
            if spec.settlement is not None and self.link is not None:
                found = await asyncio.to_thread(self.link.find_job_block, spec)
                if found is None:
                    log.warning("job %s: no escrow on chain for its spec hash", spec.job_id)
                else:
                    chain_id, start_block = found
            budget = 0
            if chain_id is not None and self.link is not None:
                view = await asyncio.to_thread(self.link.ledger.job, chain_id)
                budget = view.round_budget
            self.prepared[spec.job_id] = Prepared(
                chain_id, validation, round_budget=budget, start_block=start_block
            )
        except DeaiError as e:
            log.warning("job %s: cannot take it: %s", spec.job_id, e)
            self.prepared[spec.job_id] = Prepared(None, None, str(e))
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

    # ---------------------------------------------------------------- admission
    def is_party(self, address: str) -> bool:
        """Whether ``address`` takes part in a job this node knows (and, with a chain, is
        not known to lack the minimum stake)."""
        key = address.lower()
        return key in self.parties and key not in self.unstaked

    def knows_job(self, job_id: str) -> bool:
        return job_id in self.known_jobs

    def note_job(self, spec: JobSpec) -> None:
        """A job this node takes part in: its parties may now send it full-size bodies."""
        if spec.job_id in self.known_jobs:
            return
        self.known_jobs.add(spec.job_id)
        names = {spec.requester, *spec.providers, *spec.validators}
        self.parties.update(a.lower() for a in names)
        if self.link is not None:
            self.runtime._spawn(self._check_stakes(sorted(names)))

    async def _check_stakes(self, names: list[str]) -> None:
        """Parties without the minimum stake in the Registry lose full-size admission."""
        link = self.link
        assert link is not None

        def read() -> list[str]:
            low = link.ledger.min_stake()
            return [a for a in names if link.ledger.node(a).stake < low]

        try:
            bad = await asyncio.wait_for(asyncio.to_thread(read), 30.0)
        except (TimeoutError, DeaiError) as e:
            log.warning("cannot check the parties' stakes: %s", e)
            return
        for a in bad:
            log.warning("party %s has less than the minimum stake: admitted as a stranger", a)
        self.unstaked.update(a.lower() for a in bad)

    def _note_open(self, sender: str, msg: Message) -> None:
        """Runtime hook: an ``OpenJob`` from its requester naming this node."""
        if not isinstance(msg, OpenJob) or msg.job_id in self.known_jobs:
            return
        try:
            spec = open_spec(msg)
        except DeaiError:
            return
        me = self.address
        if sender == spec.requester and (me in spec.providers or me in spec.validators):
            self.note_job(spec)

    def gate(self, headers: Mapping[str, str], source: str, declared: int | None) -> int:
        """Headers-only admission of a request with a body (see :mod:`.admission`)."""
        env = Envelope.from_headers(headers)
        if env.recipient.lower() != self.address.lower():
            raise Rejected(RejectCode.WRONG_RECIPIENT, f"addressed to {env.recipient}")
        if self.runtime.strikes[env.sender] >= self.runtime.config.strike_limit:
            raise Rejected(RejectCode.BANNED, f"{env.sender} is banned")
        return self.runtime.admission.gate(source, env.sender, declared)

    def release(self, reserved: int) -> None:
        self.runtime.admission.release(reserved)

    def store_artifact(self, sender: str, body: bytes, expected: str | None) -> str:
        """A signed artifact from a party of a job this node knows, within its quota."""
        if not self.is_party(sender):
            raise Rejected(RejectCode.FORBIDDEN, f"{sender} is no party of a job on this node")
        self.runtime.admission.charge(sender, "artifacts", len(body))
        return self.store.put(body, expected=expected)

    # ------------------------------------------------------------------ reports
    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        if self.desk is not None and job_id in self.desk.jobs:
            return await self.desk.status(job_id)
        own = self.job_rounds(job_id)
        if own is not None:
            return own
        provider = self.role(Provider)
        if isinstance(provider, Provider) and job_id in provider.jobs:
            from deai.node.desk import committee_report

            spec = provider.jobs[job_id][0]
            report = await committee_report(self.peers, spec)
            return {**report, "job_id": job_id, "round_reports": report.get("rounds", [])}
        return None

    def job_rounds(self, job_id: str) -> dict[str, Any] | None:
        """What this validator saw of a job: every round's outcome, accuracy on the
        requester's validation data, settlement, and the payout table (no chain reads)."""
        validator = self.role(Validator)
        if not isinstance(validator, Validator) or job_id not in validator.jobs:
            return None
        accuracy = self.round_log.rounds.get(job_id, {})
        member = self.members.get(job_id)
        duties = {d.index + 1: d for d in member.duties} if member else {}
        rounds = []
        for o in validator.outcomes:
            if o.job_id != job_id:
                continue
            d = duties.get(o.round)
            rounds.append(
                {
                    "round": o.round,
                    "model_hash": o.model_hash,
                    **accuracy.get(o.round, {}),
                    "accepted": list(o.accepted),
                    "missing": list(o.missing),
                    "excluded": list(o.excluded),
                    "applied": o.applied,
                    "started_s": o.started_s,
                    "closed_s": o.closed_s,
                    "settlement": None if d is None else duty_json(d),
                }
            )
        job = validator.jobs[job_id]
        return {
            "job_id": job_id,
            "validator": self.address,
            "done": job.done,
            "stopped": job.stopped,
            "abstained": job.abstain,  # missed inputs after a restart: its table may differ
            "chain_job_id": member.chain_job if member else None,
            "rounds": rounds,
            "payout_table": dict(member.settled_table) if member else {},
        }

    # ------------------------------------------------------------------- journal
    def _journal(self, sender: str, msg: Message) -> None:
        if not isinstance(msg, OpenJob) or msg.job_id not in self.known_jobs:
            return  # only jobs that name this node (the open hook ran first)
        self.journal.record_open(sender, msg)

    def _write_journal(self, spec: JobSpec, kind: str, data: Any) -> None:
        self.journal.write(spec, kind, data)

    def _read_journal(self, spec: JobSpec, kind: str) -> Any:
        return self.journal.read(spec, kind)

    def journal_round(self, spec: JobSpec, round_: int, params: torch.Tensor) -> None:
        """A validator's model after each round it closed (by digest in the store)."""
        self.journal.record_round(spec, round_, params)

    def _resume_for(self, spec: JobSpec) -> tuple[int, torch.Tensor] | None:
        """Where a restarted validator goes on: the last round it closed, and its model."""
        return self.journal.resume(spec)

    def _replay_journal(self) -> None:
        """Hand every journaled ``OpenJob`` to the hooks and roles again: a provider takes
        part from the next task on, a validator resumes its rounds and settlement duties."""
        for sender, msg in self.journal.opened():
            try:
                if not JobSpec.from_json(msg.spec_json).algorithm.gossip:
                    self.note_job(open_spec(msg))
                    self.runtime._dispatch(sender, msg)
                    log.info("resumed job %s from the journal", msg.job_id)
            except (ValueError, KeyError, DeaiError) as e:
                log.warning("skipping journaled job %s: %s", msg.job_id, e)

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
        for lane in self._lanes.values():
            lane.pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- NodeApi
    def receive(self, headers: Any, body: bytes, body_hash: bytes | None = None) -> object | None:
        return self.runtime.receive(headers, body, body_hash)

    def authenticate(self, headers: Any, body: bytes) -> str:
        return self.runtime.authenticate(headers, body)

    async def submit_job(self, sender: str, text: str) -> dict[str, Any]:
        if self.desk is None:
            raise ConfigError("this node has no requester role")
        return await self.desk.submit(text)

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
                "outcomes": [outcome_json(o) for o in validator.outcomes],
                "rejections": [r.__dict__ for r in validator.rejections],
                "refusals": [r.__dict__ for r in validator.refusals],
                "settlements": {
                    j: [duty_json(d) for d in m.duties] for j, m in self.members.items()
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
