"""A requester node's jobs: bind the spec, escrow on chain, open the job, report on it.

Submitting is idempotent: the job id is the spec's hash (the job file's content, the
bound parties and data schema, and the requester's nonce), so a resubmission with the
same nonce names the same job; a client-chosen ``idempotency_key`` names it too. One lock
per job id is held across the whole escrow transaction, so a retry that arrives while the
first submission still waits on the chain waits for it instead of paying twice, and the
chain is searched for an escrow of the same spec hash before a new one is created (a
restarted requester never escrows twice either). A chain that fails answers 503.

Status (:meth:`JobDesk.status`) never blocks the event loop on the chain: reads run in a
worker thread with a timeout, one in flight per job, and a stalled chain answers the last
known view marked stale. Per-round accuracy and the payout table come from the job's
validators (``GET /v1/jobs/{id}/rounds``), each asked with a short timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from deai.errors import ChainError, ConfigError, DeaiError
from deai.job.spec import DataSchema, JobSpec, Parties
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import JobState
from deai.ledger.types import Role as ChainRole
from deai.node.config import parse_job
from deai.node.roles import Requester

if TYPE_CHECKING:
    from deai.node.node import Node

log = logging.getLogger("deai.node")

CHAIN_READ_TIMEOUT_S = 5.0
PEER_READ_TIMEOUT_S = 3.0


@dataclass
class Submitted:
    spec: JobSpec
    role: Requester
    chain_id: int | None
    submitted_at: float
    keys: set[str] = field(default_factory=set)  # idempotency keys that named it


class ChainReader:
    """Chain reads off the loop: one in flight per key, a timeout, the last good value."""

    def __init__(self, timeout_s: float = CHAIN_READ_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.last: dict[str, tuple[float, Any]] = {}

    async def read(self, key: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        """(value, None), or (last known value or None, why it is not fresh)."""
        fut = self.pending.get(key)
        if fut is None or fut.done():
            fut = asyncio.ensure_future(asyncio.to_thread(fn))
            self.pending[key] = fut
        try:
            value = await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
        except TimeoutError:
            return self._stale(key, f"the chain did not answer in {self.timeout_s:.0f} s")
        except Exception as e:  # a refused connection, a revert: the chain view is stale
            return self._stale(key, f"chain error: {type(e).__name__}: {e}")
        self.last[key] = (time.time(), value)
        return value, None

    def _stale(self, key: str, why: str) -> tuple[Any, str]:
        got = self.last.get(key)
        if got is None:
            return None, why
        return got[1], f"{why}; showing the view of {time.time() - got[0]:.0f} s ago"


class JobDesk:
    """A requester node's jobs (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.jobs: dict[str, Submitted] = {}
        self.by_key: dict[str, str] = {}  # idempotency key -> job id
        self._locks: dict[str, asyncio.Lock] = {}
        self.reader = ChainReader()

    def bind(self, spec: JobSpec, nonce: str) -> JobSpec:
        """The spec with this node's validation data schema, the parties (the spec's, in
        the spec's order, or every registered provider and validator, sorted by address)
        and the nonce. Blocking (chain reads): call it off the loop."""
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
        spec, nonce, key = parse_submission(body)
        if key is not None and key in self.by_key:
            return self._receipt(self.jobs[self.by_key[key]], again=True)
        bound = await _off_loop(self.bind, spec, nonce)
        lock = self._locks.setdefault(bound.job_id, asyncio.Lock())
        async with lock:  # held across the escrow: a concurrent retry waits, never pays
            existing = self.jobs.get(bound.job_id)
            if existing is not None:  # the same spec and nonce: the same job
                if key is not None:
                    self.by_key[key] = bound.job_id
                return self._receipt(existing, again=True)
            chain_id = await self._escrow(bound)
            role = Requester(self.node.address, bound)
            job = Submitted(bound, role, chain_id, time.time())
            self.jobs[bound.job_id] = job
            if key is not None:
                self.by_key[key] = bound.job_id
            self.node.note_job(bound)
            self.node.runtime.add_role(role)  # starts it: OpenJob goes to every party
            log.info("job %s submitted (chain job %s, nonce %s)", bound.job_id, chain_id, nonce)
            return self._receipt(job)

    async def _escrow(self, bound: JobSpec) -> int | None:
        if bound.settlement is None:
            return None
        link = self.node.link
        if link is None:
            raise ConfigError("job: [settlement] needs a node with a [chain] section")
        chain_id = await _off_loop(link.find_job, bound)
        if chain_id is None:
            chain_id = await _off_loop(link.create_job, bound)
        return chain_id

    def _receipt(self, job: Submitted, again: bool = False) -> dict[str, Any]:
        return {
            "job_id": job.spec.job_id,
            "chain_job_id": job.chain_id,
            "spec_hash": job.spec.spec_hash(),
            "nonce": job.spec.nonce,
            "already_submitted": again,
        }

    # ------------------------------------------------------------------- status
    async def status(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        out: dict[str, Any] = {
            "job_id": job_id,
            "spec_hash": job.spec.spec_hash(),
            "nonce": job.spec.nonce,
            "chain_job_id": job.chain_id,
            "rounds": job.spec.rounds,
            "requester": job.spec.requester,
            "providers": list(job.spec.providers),
            "validators": list(job.spec.validators),
            "submitted_at": job.submitted_at,
            "done": job.role.result is not None,
            "model_hash": job.role.result_hash,
            "spec_json": job.spec.to_json(),
        }
        link = self.node.link
        view: dict[str, Any] | None = None
        if link is not None and job.chain_id is not None:
            payees = list(job.spec.providers)  # a node id is its chain address
            view, why = await self.reader.read(
                f"job/{job_id}", lambda: _chain_view(link.ledger, job, payees)
            )
            out["chain"] = view if view is not None else {}
            if why is not None:
                out["chain"] = {**out["chain"], "error": why}
        root = None if view is None else view.get("root")
        report = await committee_report(self.node.peers, job.spec, job.chain_id, root)
        out["round_reports"] = report.get("rounds", [])
        out["reported_by"] = report.get("validator")
        table: dict[str, int] = report.get("payout_table") or {}
        out["payout_table"] = table
        if view is not None:
            out["claimable"] = _claimable(job, view, table)
        return out


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking (chain) call in a thread; any failure that is not already a deai
    error (a refused connection, a timeout) becomes a ChainError: HTTP 503, not 500."""
    try:
        return await asyncio.to_thread(fn, *args)
    except DeaiError:
        raise
    except Exception as e:
        raise ChainError(f"chain: {type(e).__name__}: {e}") from e


async def committee_report(
    peers: Any, spec: JobSpec, chain_job: int | None = None, root: str | None = None
) -> dict[str, Any]:
    """A report of the job from its validators: the first, in the spec's order, whose
    payout table has the chain's ``root`` (``0x`` hex; what a claim is checked against),
    that is done and did not abstain; else the best by those three, in that order. A
    validator that abstained (after a restart, or once its model diverged), one still
    catching up after a restart, or one outvoted in a round (the chain settled another
    committee member's result) holds a table a claim cannot be built from."""

    def score(got: dict[str, Any]) -> tuple[bool, bool, bool]:
        matches = root is None or chain_job is None
        if not matches and chain_job is not None:
            table = {str(k): int(v) for k, v in (got.get("payout_table") or {}).items()}
            matches = bool(table) and "0x" + PayoutTree(chain_job, table).root.hex() == root
        fine = not got.get("abstained")
        return (matches, bool(got.get("done")) and fine, fine)

    best: tuple[tuple[bool, bool, bool], dict[str, Any]] | None = None
    for v in spec.validators:
        url = await peers.url(v)
        if url is None:
            continue
        try:
            async with httpx.AsyncClient(timeout=PEER_READ_TIMEOUT_S, trust_env=False) as c:
                r = await c.get(f"{url.rstrip('/')}/v1/jobs/{spec.job_id}/rounds")
            if r.status_code != 200:
                continue
            got: dict[str, Any] = r.json()
            s = score(got)
        except (httpx.HTTPError, ValueError, TypeError, AttributeError, DeaiError):
            continue  # unreachable, or a report that does not parse: not one to pay from
        if all(s):
            return got
        if best is None or s > best[0]:
            best = (s, got)
    return {} if best is None else best[1]


def _chain_view(ledger: Any, job: Submitted, payees: list[str]) -> dict[str, Any]:
    """One consistent-enough read of a job's chain state (blocking)."""
    assert job.chain_id is not None
    v = ledger.job(job.chain_id)
    return {
        "state": JobState(v.state).name,
        "deposit": v.deposit,
        "payable_total": v.payable_total,
        "claimed_total": v.claimed_total,
        "refunded": v.refunded,
        "model_hash": "0x" + v.model_hash.hex(),
        "root": "0x" + v.root.hex(),
        "round": ledger.round(job.chain_id).index,
        "claimed": {p: ledger.claimed(job.chain_id, p) for p in payees},
        "requester_owed": ledger.owed(job.spec.requester),
    }


def _claimable(job: Submitted, view: dict[str, Any], table: dict[str, int]) -> dict[str, Any]:
    """What each party can claim now: a provider its table amount minus what it claimed
    (only if the table's root is the chain's), the requester its refunds (pull balance)."""
    out: dict[str, Any] = {"requester_withdrawable": view.get("requester_owed", 0)}
    if not table or job.chain_id is None:
        out["providers"] = {}
        out["note"] = "no payout table from the job's validators yet"
        return out
    root = "0x" + PayoutTree(job.chain_id, table).root.hex()
    if root != view.get("root"):
        out["providers"] = {}
        out["note"] = "the validators' table does not match the chain's root (not final yet)"
        return out
    claimed = view.get("claimed", {})
    out["providers"] = {p: int(w) - int(claimed.get(p, 0)) for p, w in table.items()}
    return out


def parse_submission(body: str) -> tuple[JobSpec, str, str | None]:
    """A submitted job: JSON ``{"spec": {...}, "nonce": ..., "idempotency_key": ...}`` or a
    job TOML file. No nonce: the spec's, else a fresh random one (printed in the receipt)."""
    import tomllib

    nonce: Any = None
    key: Any = None
    text = body.strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"submitted job: not valid JSON: {e}") from None
        if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
            raise ConfigError('submitted job: expected {"spec": {...}, "nonce": "..."}')
        spec = parse_job(d["spec"], "submitted job")
        nonce, key = d.get("nonce"), d.get("idempotency_key")
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
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 128):
        raise ConfigError("submitted job: idempotency_key must be a string of 1 to 128 chars")
    return spec, nonce, key
