"""The hidden-group task market on the Tasks contract: requester and worker roles.

Flow of :func:`run_rounds` (docs/verification.md, "On chain"), per round:

1. The requester posts one batch of slots: the new tasks' primaries and the checkers of
   the previous round's primaries that its key sampled, shuffled. Every slot has a fresh
   random id and a blinded spec ``keccak(spec_hash, blind)``, so no slot links to another.
2. Each worker accepts its slots by one transaction that posts the bonds and the
   commitments ``keccak(slot_id, worker, lanes, salt)``. An *adaptive* worker looks at the
   chain first for anything tying its task to another slot (a group with its spec hash);
   there is none before the commit deadline, so it cannot tell a checked task.
3. After the deadline the requester computes each new primary's decision
   ``keccak(secret, commitment) < threshold`` (:func:`deai.ledger.tasks_types.sampled`)
   and groups the previous round's sampled primaries with their (now committed) checkers.
4. Grouped members reveal at once and the groups are finalized (a majority verdict becomes
   final after the contest window, the next round); unchecked primaries reveal when their
   group window has passed and are settled in batches.

At the end the requester reveals its key; anyone can then audit every primary
(:meth:`SlotRequester.audit_all`). Secrets (the key, worker salts) come from
:class:`deai.privacy.secrets.SimulatedSecrets`; no role reads another's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from eth_hash.auto import keccak
from web3.logs import DISCARD

from deai.errors import ConfigError
from deai.ledger import Ledger, Reverted
from deai.ledger.tasks_types import (
    PROFILES,
    SlotState,
    key_commitment,
    pack_lanes,
    sampled,
    slot_commitment,
    spec_commitment,
)
from deai.verification import profiles as prof
from deai.verification.fingerprint import LaneConfig, lanes_of
from deai.verification.sampling import rate_threshold
from deai.verification.tasks import InferenceTask

MAX_POST = 48  # slots per post transaction (gas)
GROUP_WINDOW = 900  # Tasks.vy constants the driver waits for
CONTEST_WINDOW = 300


class Strategy(Enum):
    HONEST = "honest"
    CHEAT = "cheat"  # cheats on every slot (naive)
    CHEAT_WHEN_ALONE = "cheat_when_alone"  # cheats unless it sees its task is checked


@dataclass(frozen=True)
class SlotMarketConfig:
    rate: float = 0.5  # sampling threshold / 2^256
    k: int = 3  # members of a checked task's group (primary + k - 1 checkers)
    fee: int = 10**15  # wei per slot
    bond: int = 10**16  # wei a worker bonds per accepted slot
    key_bond: int = 10**18  # wei the requester bonds on its key
    commit_period: int = 300  # Tasks.vy MIN_COMMIT_PERIOD


@dataclass
class SlotRecord:
    slot_id: bytes
    task: int  # index into the task list
    worker: str
    blind: bytes
    primary: bool
    commitment: bytes = b""
    lanes: int = 0
    salt: bytes = b""
    cheated: bool = False
    checked: bool = False  # primary sampled (or a checker)
    group: int = 0


class SlotWorker:
    """A worker: computes under its profile and kernel, commits, reveals."""

    def __init__(
        self,
        address: str,
        secret: bytes,
        profile: prof.Profile,
        env: prof.KernelEnv,
        strategy: Strategy = Strategy.HONEST,
        cheat: prof.Cheat = prof.Cheat.INT8,
    ) -> None:
        self.address, self._secret = address, secret
        self.profile, self.env, self.strategy, self.cheat = profile, env, strategy, cheat
        self.cheated_alone_checks = 0  # times the adaptive rule saw company (should stay 0)

    def salt(self, slot_id: bytes) -> bytes:
        return bytes(keccak(b"deai.slot.salt" + self._secret + slot_id))

    @staticmethod
    def _grouped_specs(ledger: Ledger, since: int) -> set[bytes]:
        """The adaptive rule's view: spec hashes the chain already ties to a group."""
        return {bytes(g.args["spec_hash"]) for g in ledger.events("GroupFormed", from_block=since)}

    def result(self, task: InferenceTask, cheat: bool, lanes: LaneConfig) -> int:
        out = prof.forward(
            task.model,
            task.params,
            task.inputs,
            self.profile,
            self.env,
            self.cheat if cheat else None,
            fake_seed=int.from_bytes(self.salt(task.task_id)[:7], "big"),
        )
        return pack_lanes(lanes_of(out, task.task_id, lanes))

    def accept(
        self,
        ledger: Ledger,
        slots: Sequence[SlotRecord],
        tasks: Sequence[InferenceTask],
        lanes: LaneConfig,
        bond: int,
        since: int,
    ) -> None:
        """Compute and commit every slot offered this round (one transaction)."""
        if not slots:
            return
        seen = (
            self._grouped_specs(ledger, since)
            if self.strategy is Strategy.CHEAT_WHEN_ALONE
            else set()
        )
        for s in slots:
            task = tasks[s.task]
            cheat = self.strategy is Strategy.CHEAT
            if self.strategy is Strategy.CHEAT_WHEN_ALONE:
                company = task.task_id in seen
                self.cheated_alone_checks += company
                cheat = not company
            s.cheated = cheat
            s.lanes = self.result(task, cheat, lanes)
            s.salt = self.salt(s.slot_id)
            s.commitment = slot_commitment(s.slot_id, self.address, s.lanes, s.salt)
        ids, cs = [s.slot_id for s in slots], [s.commitment for s in slots]
        ledger.commit_slots(self.address, ids, cs, bond)

    def reveal(self, ledger: Ledger, slots: Sequence[SlotRecord]) -> None:
        if slots:
            ledger.reveal_slots(
                self.address,
                [s.slot_id for s in slots],
                [s.lanes for s in slots],
                [s.salt for s in slots],
            )


class SlotRequester:
    """The requester: commits its key, posts blinded slots, samples and groups."""

    def __init__(
        self,
        ledger: Ledger,
        address: str,
        secret: bytes,
        config: SlotMarketConfig,
        tolerances: Sequence[int],
        rng: random.Random,
    ) -> None:
        if len(tolerances) != PROFILES:
            raise ConfigError(f"chain: need {PROFILES} tolerances")
        self.ledger, self.address, self._secret, self.config = ledger, address, secret, config
        self.threshold = rate_threshold(config.rate)
        self.tolerances = list(tolerances)
        self._rng = rng
        self.key_id = 0
        self.slots: list[SlotRecord] = []

    def open_key(self, horizon: int) -> int:
        """Commit the key (before any slot exists); it must be revealed within ``horizon``."""
        self.key_id = self.ledger.commit_key(
            self.address,
            commitment=key_commitment(self._secret, min(self.threshold, 2**256 - 1)),
            threshold=min(self.threshold, 2**256 - 1),
            slot_bond=self.config.bond,
            tolerances=self.tolerances,
            reveal_by=self.ledger.now() + horizon,
            bond=self.config.key_bond,
        )
        return self.key_id

    def post(
        self, offers: Sequence[tuple[int, str, bool]], tasks: Sequence[InferenceTask], profile: int
    ) -> list[SlotRecord]:
        """Post ``(task, worker, primary)`` offers in a shuffled order; new random ids."""
        recs = [SlotRecord(self.new_id(p), t, w, self._rng.randbytes(32), p) for t, w, p in offers]
        self._rng.shuffle(recs)
        for i in range(0, len(recs), MAX_POST):
            part = recs[i : i + MAX_POST]
            self.ledger.post_slots(
                self.address,
                self.key_id,
                slot_ids=[r.slot_id for r in part],
                workers=[r.worker for r in part],
                specs=[spec_commitment(tasks[r.task].task_id, r.blind) for r in part],
                profiles=[profile] * len(part),
                commit_period=self.config.commit_period,
                fee_each=self.config.fee,
            )
        self.slots += recs
        return recs

    def new_id(self, primary: bool) -> bytes:
        """A fresh random slot id (a grinding requester overrides this, to no avail)."""
        return self._rng.randbytes(32)

    def sampled(self, primary: SlotRecord) -> bool:
        """The derived decision for a committed primary."""
        return sampled(self._secret, primary.commitment, self.threshold)

    def group(self, members: Sequence[SlotRecord], tasks: Sequence[InferenceTask]) -> int:
        spec = tasks[members[0].task].task_id
        gid = self.ledger.group_slots(
            self.address, [m.slot_id for m in members], spec, [m.blind for m in members]
        )
        for m in members:
            m.group = gid
        return gid

    def reveal_key(self) -> None:
        self.ledger.reveal_key(self.address, self.key_id, self._secret)

    def audit_all(self, auditor: str) -> int:
        """Audit every committed primary (after the key reveal); returns failures found."""
        failures = 0
        for s in self.slots:
            if s.primary and s.commitment:
                try:
                    self.ledger.audit_slot(auditor, s.slot_id)
                    failures += 1
                except Reverted as exc:
                    if "decision respected" not in exc.reason:
                        raise
        return failures


@dataclass
class RoundsReport:
    slots: list[SlotRecord]
    outcome: dict[bytes, str] = field(default_factory=dict)  # slot id -> SlotState name
    groups: int = 0
    rounds: int = 0


def run_rounds(
    ledger: Ledger,
    requester: SlotRequester,
    tasks: Sequence[InferenceTask],
    primary_of: Callable[[int], SlotWorker],
    checkers: Sequence[SlotWorker],
    lanes: LaneConfig,
    profile: prof.Profile,
    per_round: int,
    rng: random.Random,
) -> RoundsReport:
    """Run every task through the hidden-group flow (module docstring) and settle all."""
    cfg, chain = requester.config, ledger.chain
    workers = {w.address: w for w in [*checkers, *(primary_of(i) for i in range(len(tasks)))]}
    pending: list[SlotRecord] = []  # sampled primaries waiting for their checkers
    singles: list[tuple[int, SlotRecord]] = []  # (reveal-open time, unchecked primary)
    contest: list[int] = []
    since = ledger.block_number()
    report = RoundsReport(requester.slots)
    nxt = 0
    while nxt < len(tasks) or pending:
        offers = [
            (i, primary_of(i).address, True) for i in range(nxt, min(nxt + per_round, len(tasks)))
        ]
        nxt += len(offers)
        for p in pending:
            pool = [w for w in checkers if w.address != p.worker]
            offers += [(p.task, w.address, False) for w in rng.sample(pool, cfg.k - 1)]
        recs = requester.post(offers, tasks, profile.index)
        deadline = ledger.now() + cfg.commit_period
        for w in workers.values():
            mine = [r for r in recs if r.worker == w.address]
            w.accept(ledger, mine, tasks, lanes, cfg.bond, since)
        chain.advance_time(cfg.commit_period)
        if contest:  # majority verdicts of the previous round: window over
            ledger.finalize_tasks(requester.address, contest)
            contest = []
        grouped: list[SlotRecord] = []
        for p in pending:
            members = [p] + [r for r in recs if r.task == p.task and not r.primary]
            requester.group(members, tasks)
            grouped += members
            contest.append(members[0].group)
        for w in workers.values():
            w.reveal(ledger, [m for m in grouped if m.worker == w.address])
        if contest:
            ledger.finalize_tasks(requester.address, contest)
            receipt = ledger.last_receipt
            events = ledger.tasks.events.GroupContestable().process_receipt(receipt, errors=DISCARD)
            contest = [int(e["args"]["group_id"]) for e in events]
        report.groups += len(pending)
        pending = []
        for r in recs:
            if r.primary:
                r.checked = requester.sampled(r)
                if r.checked:
                    pending.append(r)
                else:
                    singles.append((deadline + GROUP_WINDOW, r))
        singles = _settle_due(ledger, requester, workers, singles)
        report.rounds += 1
    while singles or contest:  # drain: one contest window at a time
        chain.advance_time(CONTEST_WINDOW)
        if contest:
            ledger.finalize_tasks(requester.address, contest)
            contest = []
        singles = _settle_due(ledger, requester, workers, singles)
    for e in ledger.events("SlotSettled", from_block=since):
        report.outcome[bytes(e.args["slot_id"])] = SlotState(e.args["state"]).name or ""
    return report


def _settle_due(
    ledger: Ledger,
    requester: SlotRequester,
    workers: dict[str, SlotWorker],
    singles: list[tuple[int, SlotRecord]],
) -> list[tuple[int, SlotRecord]]:
    now = ledger.now()
    due = [r for t, r in singles if t <= now]
    for w in workers.values():
        mine = [r for r in due if r.worker == w.address]
        for i in range(0, len(mine), MAX_POST):
            w.reveal(ledger, mine[i : i + MAX_POST])
    for i in range(0, len(due), MAX_POST):
        ledger.settle_single(requester.address, [r.slot_id for r in due[i : i + MAX_POST]])
    return [(t, r) for t, r in singles if t > now]
