"""Typed views of ledger state and the values validators and workers commit to."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from deai.errors import ConfigError

# where slashed funds go unless a deployment names another recipient: nobody profits
BURN_ADDRESS = "0x000000000000000000000000000000000000dEaD"
# protocol-wide timing rules, equal to Registry.MIN_PERIOD / FINALIZE_GRACE (seconds)
MIN_PERIOD = 300  # shortest commit, reveal or claim window any job may ask for
FINALIZE_GRACE = 300  # after a reveal deadline: then anyone may finalize for a tip


class Role(enum.IntFlag):
    """Node roles as the Registry's bitmask."""

    REQUESTER = 1
    PROVIDER = 2
    WORKER = 4
    VALIDATOR = 8


class JobState(enum.IntFlag):
    """``Jobs.vy``'s ``JobState`` flag."""

    NONE = 0
    OPEN = 1
    DONE = 2
    SWEPT = 4


class TaskState(enum.IntFlag):
    """``Tasks.vy``'s ``GroupState`` flag (the state of one task's check group)."""

    NONE = 0
    OPEN = 1
    CONTESTABLE = 2
    ESCALATED = 4
    SETTLED = 8
    VOID = 16


@dataclass(frozen=True)
class LedgerConfig:
    """Rules fixed at deploy; none can be changed afterwards."""

    min_stake: int = 10**18  # wei a node must keep staked to be active
    withdrawal_delay: int = 3 * 24 * 3600  # s between unstake request and withdrawal;
    # the longest commit + reveal window of a job is this minus FINALIZE_GRACE minus 1
    slash_recipient: str = BURN_ADDRESS  # receives swept slashed stake
    job_slash: int = 10**18  # wei taken from a faulty committee member
    task_slash: int = 10**17  # wei taken from a faulty task worker

    def __post_init__(self) -> None:
        if self.min_stake <= 0:
            raise ConfigError("min_stake must be positive")
        if self.withdrawal_delay <= 2 * MIN_PERIOD + FINALIZE_GRACE:
            raise ConfigError(
                f"withdrawal_delay must exceed {2 * MIN_PERIOD + FINALIZE_GRACE} s "
                "(the shortest round plus the finalize grace)"
            )
        if self.job_slash < 0 or self.task_slash < 0:
            raise ConfigError("slash amounts must be non-negative")


@dataclass(frozen=True)
class Deployment:
    """Addresses of one deployment (the Registry creates Jobs and Tasks)."""

    registry: str
    jobs: str
    tasks: str
    chain_id: int
    block: int  # block of the Registry deployment (start of event scans)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad deployment file {path}: {exc}") from exc


@dataclass(frozen=True)
class RoundResult:
    """What a committee agrees on for one round."""

    model_hash: bytes  # 32-byte hash of the new global model
    root: bytes  # 32-byte root of the cumulative payout tree after this round
    total: int  # wei this round adds to the payouts

    @property
    def hash(self) -> bytes:
        """``keccak256(abi.encode(model_hash, root, total))`` as the contract tallies it."""
        return keccak(encode(["bytes32", "bytes32", "uint256"], [*self._words(), self.total]))

    def _words(self) -> tuple[bytes, bytes]:
        if len(self.model_hash) != 32 or len(self.root) != 32:
            raise ConfigError("model_hash and root must be 32 bytes")
        return self.model_hash, self.root


def result_commitment(
    job_id: int, round_index: int, member: str, result: RoundResult, salt: bytes
) -> bytes:
    """The commitment ``Jobs.reveal`` checks: binds job, round and member so a commitment
    can neither be copied by another member nor replayed in another round."""
    model_hash, root = result._words()
    return keccak(
        encode(
            ["uint256", "uint256", "address", "bytes32", "bytes32", "uint256", "bytes32"],
            [job_id, round_index, member, model_hash, root, result.total, salt],
        )
    )


def task_commitment(task_id: int, worker: str, result_hash: bytes, salt: bytes) -> bytes:
    """The commitment ``Tasks.reveal`` checks."""
    return keccak(
        encode(["uint256", "address", "bytes32", "bytes32"], [task_id, worker, result_hash, salt])
    )


@dataclass(frozen=True)
class NodeView:
    address: str
    stake: int  # active stake, wei
    pending: int  # unstaked, waiting for unlock_at
    unlock_at: int  # timestamp
    roles: Role
    endpoint: str
    slot: int = 0  # validator tree slot (0: not in the tree)
    locked: int = 0  # stake locked by accepted committee duties


@dataclass(frozen=True)
class JobView:
    job_id: int
    requester: str
    spec_hash: bytes
    rounds: int
    committee_size: int
    commit_period: int
    reveal_period: int
    claim_period: int
    deposit: int
    round_budget: int
    state: JobState
    done_at: int
    model_hash: bytes  # latest settled model
    root: bytes  # latest payout root
    payable_total: int  # sum of settled round totals
    claimed_total: int
    refunded: int
    slashed: int  # stake slashed from this job's committees (goes to the slash recipient)
    tipped: int = 0  # tips paid to late finalizers out of unpaid round budgets

    @classmethod
    def from_tuple(cls, job_id: int, t: Any) -> JobView:
        (requester, spec, rounds, size, commit_p, reveal_p, claim_p, deposit, budget, state,
         done_at, model, root, payable, claimed, refunded, slashed, tipped) = t  # fmt: skip
        return cls(job_id, requester, bytes(spec), rounds, size, commit_p, reveal_p, claim_p,
                   deposit, budget, JobState(state), done_at, bytes(model), bytes(root),
                   payable, claimed, refunded, slashed, tipped)  # fmt: skip


@dataclass(frozen=True)
class RoundView:
    job_id: int
    index: int
    seed: bytes
    size: int  # distinct members drawn (0 until drawn)
    commit_deadline: int
    reveal_deadline: int
    committed: frozenset[int]  # member indices that committed
    revealed: frozenset[int]
    seats: int = 0  # seats drawn (a member may hold several)
    seed_block: int = 0  # block whose hash seeds the draw
    drawn: bool = False
    level: int = 0  # 1 once a split round escalated to a fresh, larger committee


@dataclass(frozen=True)
class TaskView:
    """One task's check group on ``Tasks.vy`` (slot ids in member order, primary first)."""

    task_id: int  # the group id
    key_id: int
    size: int
    profile: int
    spec_hash: bytes
    reveal_deadline: int
    state: TaskState
    enroll_end: int
    seal_block: int
    jury_mask: int
    jury_deadline: int
    enrolled: int
    verdict: int  # the majority's fingerprint while contestable
    contester: str
    slots: tuple[bytes, ...]


@dataclass(frozen=True)
class Event:
    """A decoded contract event."""

    name: str
    contract: str  # "Registry", "Jobs" or "Tasks"
    block: int
    tx_hash: str
    args: dict[str, Any]


def mask_bits(mask: int, shift: int, count: int) -> frozenset[int]:
    """Indices whose bit is set in ``mask >> shift`` (low ``count`` bits)."""
    return frozenset(i for i in range(count) if (mask >> (shift + i)) & 1)
