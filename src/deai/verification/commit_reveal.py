"""Commit-reveal cross-checking of k results (Crynux H-net style, see the first survey's
section 6.4) and the settlement interface the ledger implements.

Commitment: ``keccak(abi.encode(bytes32 result_hash, bytes32 salt, address worker))``, i.e.
``keccak(result_hash | salt | 12 zero bytes | worker)``, what Vyper computes with
``keccak256(abi_encode(result_hash, salt, msg.sender))``.

Why the worker's address is inside: with ``keccak(result_hash | salt)`` alone a lazy worker
can copy an honest worker's commitment and, once the honest worker's reveal is public (or in
the mempool), replay the same ``(result_hash, salt)``. Binding the address makes a copied
commitment impossible to open by anyone but its author; the salt keeps the result hidden
until every commitment is in, so there is nothing to copy before the reveal phase.

Decision (:func:`decide`): among the revealed results, the one that the most results match
(exact hash equality, or a tolerant match such as
:func:`deai.verification.fingerprint.matches`) wins if it is matched by a strict majority of
the k workers; its supporters are paid, everyone else (mismatching or not revealing) is
slashed. Without a strict majority the task is refunded and only non-revealers are slashed.
A split verdict (not unanimous) can be escalated to a fresh, larger committee, whose
majority result then becomes the reference (:meth:`InMemoryTaskSettlement.settle`).

Threat model: up to a minority of any committee may lie and collude; a colluding majority
wins (its probability enters the stake formula in :mod:`.economics`). Workers see only their
own task until every commitment is fixed, so they cannot tell a checked task from an
unchecked one when they compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from eth_hash.auto import keccak

from deai.errors import VerificationError

Match = Callable[[bytes, bytes], bool]  # (result_hash_a, result_hash_b) -> equivalent?


class SettlementError(VerificationError):
    """A commit, reveal or settle call broke the task protocol (wrong phase, unknown
    worker, double commit). The call is rejected; the task's state is unchanged."""


def _address_bytes(worker: str) -> bytes:
    raw = bytes.fromhex(worker.removeprefix("0x"))
    if len(raw) != 20:
        raise SettlementError(f"commit_reveal: {worker!r} is not a 20-byte address")
    return raw


def result_commitment(result_hash: bytes, salt: bytes, worker: str) -> bytes:
    """``keccak(abi.encode(result_hash, salt, worker))`` (module docstring)."""
    if len(result_hash) != 32 or len(salt) != 32:
        raise SettlementError("commit_reveal: result_hash and salt must be 32 bytes")
    return bytes(keccak(result_hash + salt + b"\x00" * 12 + _address_bytes(worker)))


def unbound_commitment(result_hash: bytes, salt: bytes) -> bytes:
    """``keccak(result_hash | salt)``: the naive scheme that copying defeats. Kept only so
    tests and the benchmark can show why :func:`result_commitment` binds the address."""
    return bytes(keccak(result_hash + salt))


class Outcome(Enum):
    ACCEPTED = "accepted"  # a strict majority agreed; its result is the task's result
    REFUNDED = "refunded"  # no strict majority; the requester gets the fees back


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    result_hash: bytes | None  # the accepted result's hash (the pivot's), None if refunded
    majority: tuple[str, ...]  # paid workers
    minority: tuple[str, ...]  # slashed workers (mismatching or not revealing)
    unanimous: bool  # every worker revealed a matching result


def _same(match: Match | None) -> Match:
    return lambda a, b: a == b or (match is not None and match(a, b))


def decide(revealed: Mapping[str, bytes | None], match: Match | None = None) -> Verdict:
    """Majority decision over ``worker -> result_hash`` (``None``: no valid reveal).

    The pivot is the revealed result with the most matches (ties: first in order); it wins
    if strictly more than half of all workers match it. Deterministic given the order.
    """
    same = _same(match)
    workers = list(revealed)
    valid = [(w, h) for w, h in revealed.items() if h is not None]
    best: list[str] = []
    best_hash: bytes | None = None
    for _, h in valid:
        support = [v for v, g in valid if same(h, g)]
        if len(support) > len(best):
            best, best_hash = support, h
    if 2 * len(best) > len(workers):
        minority = tuple(w for w in workers if w not in best)
        return Verdict(Outcome.ACCEPTED, best_hash, tuple(best), minority, not minority)
    silent = tuple(w for w, h in revealed.items() if h is None)
    return Verdict(Outcome.REFUNDED, None, (), silent, False)


def judge_by_reference(
    revealed: Mapping[str, bytes | None], reference: bytes, match: Match | None = None
) -> Verdict:
    """Verdict when an escalation committee fixed the correct result: workers whose reveal
    matches ``reference`` are paid, all others slashed."""
    same = _same(match)
    good = tuple(w for w, h in revealed.items() if h is not None and same(reference, h))
    bad = tuple(w for w in revealed if w not in good)
    outcome = Outcome.ACCEPTED if good else Outcome.REFUNDED
    return Verdict(outcome, reference if good else None, good, bad, not bad)


@dataclass(frozen=True)
class Settlement:
    task_id: bytes
    verdict: Verdict
    paid: Mapping[str, int]  # fee paid to each majority worker
    slashed: Mapping[str, int]  # stake taken from each minority worker
    refunded: int  # fee returned to the requester


class TaskSettlement(Protocol):
    """What the ledger's Tasks contract provides. The in-memory class below applies the same
    rules; the chain client implements this Protocol so the driver runs on either."""

    def open(self, task_id: bytes, fee: int, slash: int, workers: Sequence[str]) -> None:
        """Escrow ``fee`` per worker; each worker risks ``slash`` of its stake."""

    def commit(self, task_id: bytes, worker: str, commitment: bytes) -> None:
        """Record a commitment; only during the commit phase, once per worker."""

    def reveal(self, task_id: bytes, worker: str, result_hash: bytes, salt: bytes) -> None:
        """Open a commitment; only once every commitment is in."""

    def settle(self, task_id: bytes, reference: bytes | None = None) -> Settlement:
        """Apply :func:`decide` (or :func:`judge_by_reference`) and move the money."""


class Phase(Enum):
    COMMIT = "commit"
    REVEAL = "reveal"
    SETTLED = "settled"


@dataclass
class _Task:
    fee: int
    slash: int
    workers: tuple[str, ...]
    phase: Phase = Phase.COMMIT
    commitments: dict[str, bytes] = field(default_factory=dict)
    reveals: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Ledger:
    """Balances of the in-memory reference: everything is integer units."""

    escrowed: int = 0
    paid: int = 0
    refunded: int = 0
    slashed: int = 0  # burned: nobody profits from a slash, so nobody is paid to provoke one


class InMemoryTaskSettlement:
    """Reference :class:`TaskSettlement`: same rules as the Tasks contract, no chain.

    ``match`` is the tolerant path: given two revealed result hashes it looks up the
    fingerprints they name (off-chain, content-addressed) and compares them.
    """

    def __init__(self, match: Match | None = None) -> None:
        self.match = match
        self.tasks: dict[bytes, _Task] = {}
        self.ledger = Ledger()

    def _get(self, task_id: bytes, phase: Phase) -> _Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise SettlementError(f"commit_reveal: unknown task {task_id.hex()[:12]}")
        if task.phase is not phase:
            raise SettlementError(f"commit_reveal: task is in phase {task.phase.value}")
        return task

    def open(self, task_id: bytes, fee: int, slash: int, workers: Sequence[str]) -> None:
        if task_id in self.tasks:
            raise SettlementError("commit_reveal: task already open")
        if fee < 0 or slash < 0 or not workers or len(set(workers)) != len(workers):
            raise SettlementError("commit_reveal: bad fee, slash or worker list")
        self.tasks[task_id] = _Task(fee, slash, tuple(workers))
        self.ledger.escrowed += fee * len(workers)

    def commit(self, task_id: bytes, worker: str, commitment: bytes) -> None:
        task = self._get(task_id, Phase.COMMIT)
        if worker not in task.workers or worker in task.commitments:
            raise SettlementError(f"commit_reveal: {worker} may not commit")
        task.commitments[worker] = commitment
        if len(task.commitments) == len(task.workers):
            task.phase = Phase.REVEAL

    def close_commits(self, task_id: bytes) -> None:
        """Commit deadline passed: go to the reveal phase with whoever committed."""
        self._get(task_id, Phase.COMMIT).phase = Phase.REVEAL

    def reveal(self, task_id: bytes, worker: str, result_hash: bytes, salt: bytes) -> None:
        task = self._get(task_id, Phase.REVEAL)
        expected = task.commitments.get(worker)
        if expected is None or worker in task.reveals:
            raise SettlementError(f"commit_reveal: {worker} has nothing to reveal")
        if result_commitment(result_hash, salt, worker) != expected:
            raise SettlementError(f"commit_reveal: {worker}'s reveal does not open its commit")
        task.reveals[worker] = result_hash

    def settle(self, task_id: bytes, reference: bytes | None = None) -> Settlement:
        task = self.tasks.get(task_id)
        if task is None or task.phase is Phase.SETTLED:
            raise SettlementError("commit_reveal: task unknown or already settled")
        task.phase = Phase.SETTLED
        revealed = {w: task.reveals.get(w) for w in task.workers}
        verdict = (
            decide(revealed, self.match)
            if reference is None
            else judge_by_reference(revealed, reference, self.match)
        )
        paid = {w: task.fee for w in verdict.majority}
        slashed = {w: task.slash for w in verdict.minority}
        refunded = task.fee * len(task.workers) - sum(paid.values())
        self.ledger.paid += sum(paid.values())
        self.ledger.refunded += refunded
        self.ledger.slashed += sum(slashed.values())
        return Settlement(task_id, verdict, paid, slashed, refunded)
