"""Tasks: hidden check groups with per-slot bonds, derived sampling, escalation to a jury.

Attacks from issue 13 (finding 1: a requester names workers without their consent;
finding 8: one liar voids a task for free, a colluding majority of the requester's own
workers outvotes an honest one) and issue 15 (finding 1: group visible before commit;
finding 2: the requester aims checks) are written as tests of the deployed contract.
"""

from __future__ import annotations

import os

import pytest
from ledger_helpers import ETH, World

from deai.ledger.client import Ledger
from deai.ledger.errors import Reverted
from deai.ledger.tasks_types import (
    SlotState,
    juror_commitment,
    key_commitment,
    pack_lanes,
    sampled,
    slot_commitment,
    spec_commitment,
)
from deai.ledger.types import Role, TaskState

SPEC = b"\x22" * 32
BOND = ETH // 10
FEE = ETH // 100
PERIOD = 300  # MIN_COMMIT_PERIOD
WINDOW = 300  # REVEAL_WINDOW = ENROLL_WINDOW = CONTEST_WINDOW
GROUP_WINDOW = 900
GOOD = pack_lanes([100, -5, 7, 0, 3, 3, 9, -100])
NEAR = pack_lanes([101, -5, 6, 0, 3, 3, 9, -99])  # within a tolerance of 2
BAD = pack_lanes([400, -5, 7, 0, 3, 3, 9, -100])


class Market:
    """A requester key plus helpers to post, commit and reveal slots."""

    def __init__(self, world: World, threshold: int = 2**255, key_bond: int = ETH) -> None:
        self.w, self.led = world, world.ledger
        self.secret = os.urandom(32)
        self.threshold = threshold
        self.key_id = self.led.commit_key(
            world.requester,
            commitment=key_commitment(self.secret, threshold),
            threshold=threshold,
            slot_bond=BOND,
            tolerances=[2, 2, 2, 2],
            reveal_by=self.led.now() + 10 * PERIOD,
            bond=key_bond,
        )
        self.salts: dict[bytes, bytes] = {}
        self.blinds: dict[bytes, bytes] = {}

    def post(self, workers: list[str], spec: bytes = SPEC) -> list[bytes]:
        ids = [os.urandom(32) for _ in workers]
        for i in ids:
            self.blinds[i] = os.urandom(32)
        self.led.post_slots(
            self.w.requester,
            self.key_id,
            slot_ids=ids,
            workers=workers,
            specs=[spec_commitment(spec, self.blinds[i]) for i in ids],
            profiles=[0] * len(ids),
            commit_period=PERIOD,
            fee_each=FEE,
        )
        return ids

    def commit(self, worker: str, slot: bytes, fp: int) -> bytes:
        salt = self.salts.setdefault(slot, os.urandom(32))
        c = slot_commitment(slot, worker, fp, salt)
        self.led.commit_slots(worker, [slot], [c], BOND)
        return c

    def reveal(self, worker: str, slot: bytes, fp: int) -> None:
        self.led.reveal_slots(worker, [slot], [fp], [self.salts[slot]])

    def group(self, slots: list[bytes], spec: bytes = SPEC) -> int:
        return self.led.group_slots(self.w.requester, slots, spec, [self.blinds[s] for s in slots])


def conserved(led: Ledger) -> None:
    f = led.tasks.functions
    held, owed, burned = f.held().call(), f.total_owed().call(), f.burned().call()
    assert led.balance(led.tasks.address) == held + owed + burned


def test_naming_a_worker_costs_it_nothing(world: World) -> None:
    """Issue 13 finding 1: a slot a worker never accepted is refunded, nobody is slashed."""
    m = Market(world)
    (slot,) = m.post([world.workers[0]])
    with pytest.raises(Reverted, match="tasks: commits still open"):
        world.ledger.settle_single(world.others[0], [slot])
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="tasks: commit closed"):
        m.commit(world.workers[0], slot, GOOD)
    world.ledger.settle_single(world.others[0], [slot])
    assert world.ledger.slot(slot).state == SlotState.REFUNDED
    assert world.ledger.task_owed(world.requester) == FEE
    assert world.ledger.task_owed(world.workers[0]) == 0
    assert world.ledger.tasks.functions.burned().call() == 0
    conserved(world.ledger)


def test_only_the_named_worker_accepts_and_pays_the_bond(world: World) -> None:
    m = Market(world)
    (slot,) = m.post([world.workers[0]])
    c = slot_commitment(slot, world.workers[1], GOOD, b"\x01" * 32)
    with pytest.raises(Reverted, match="tasks: not offered to the caller"):
        world.ledger.commit_slots(world.workers[1], [slot], [c], BOND)
    c = slot_commitment(slot, world.workers[0], GOOD, b"\x01" * 32)
    with pytest.raises(Reverted, match="tasks: wrong bond"):
        world.ledger.commit_slots(world.workers[0], [slot], [c], BOND - 1)


def test_single_slot_paid_after_the_group_window(world: World) -> None:
    led, w0 = world.ledger, world.workers[0]
    m = Market(world)
    (slot,) = m.post([w0])
    m.commit(w0, slot, GOOD)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="tasks: reveal not open"):
        m.reveal(w0, slot, GOOD)
    world.chain.advance_time(GROUP_WINDOW)
    m.reveal(w0, slot, GOOD)
    led.settle_single(world.others[0], [slot])
    assert led.task_owed(w0) == FEE + BOND
    led.task_withdraw(w0)
    conserved(led)


def test_silent_after_accepting_loses_the_bond(world: World) -> None:
    led, w0 = world.ledger, world.workers[0]
    m = Market(world)
    (slot,) = m.post([w0])
    m.commit(w0, slot, GOOD)
    world.chain.advance_time(PERIOD + GROUP_WINDOW + WINDOW)
    led.settle_single(world.others[0], [slot])
    assert led.slot(slot).state == SlotState.SLASHED
    assert led.tasks.functions.burned().call() == BOND
    assert led.task_owed(world.requester) == FEE
    conserved(led)


def test_group_revealed_only_after_every_commit_deadline(world: World) -> None:
    """Issue 15 finding 1: nothing on chain links the slots of one task before the
    commits close; the group reveal proves one spec for all members."""
    led, (w0, w1, w2) = world.ledger, world.workers
    m = Market(world)
    slots = m.post([w0, w1, w2])
    specs = {led.slot(s).spec for s in slots}
    assert len(specs) == 3  # blinded: equal specs look unrelated
    for w, s, fp in zip((w0, w1, w2), slots, (GOOD, NEAR, GOOD), strict=True):
        m.commit(w, s, fp)
    with pytest.raises(Reverted, match="tasks: commits still open"):
        m.group(slots)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="tasks: spec mismatch"):
        m.group(slots, spec=b"\x33" * 32)
    gid = m.group(slots)
    for w, s, fp in zip((w0, w1, w2), slots, (GOOD, NEAR, GOOD), strict=True):
        m.reveal(w, s, fp)
    led.finalize_task(world.others[0], gid)
    assert led.task(gid).state == TaskState.SETTLED
    assert all(led.task_owed(w) == FEE + BOND for w in (w0, w1, w2))
    conserved(led)


def _escalate(
    world: World, m: Market, answers: dict[str, int], state: TaskState = TaskState.ESCALATED
) -> tuple[int, list[bytes]]:
    slots = m.post(list(answers))
    for (w, fp), s in zip(answers.items(), slots, strict=True):
        m.commit(w, s, fp)
    world.chain.advance_time(PERIOD)
    gid = m.group(slots)
    for (w, fp), s in zip(answers.items(), slots, strict=True):
        m.reveal(w, s, fp)
    world.ledger.finalize_task(world.others[0], gid)
    assert world.ledger.task(gid).state == state
    return gid, slots


def _jury(world: World, gid: int, jurors: dict[str, int]) -> None:
    led = world.ledger
    salt = b"\x07" * 32
    for j, fp in jurors.items():
        led.enroll(j, gid, juror_commitment(gid, j, fp, salt), 0, BOND)
    world.chain.advance_time(WINDOW)
    led.draw_jury(world.others[0], gid)  # fixes the seed block: the next one
    world.chain.advance_time(1)  # mines it (and one more block: anvil
    world.chain.advance_time(1)  # may mine the seed block with the next transaction)
    led.draw_jury(world.others[0], gid)
    mask = led.task(gid).jury_mask
    for i, j in enumerate(led.jurors(gid)):
        if mask >> i & 1:
            led.juror_reveal(j, gid, i, jurors[j], salt)
    led.finalize_escalation(world.others[0], gid)


def _more_workers(world: World, count: int) -> list[str]:
    extra = world.others[:count]
    for a in extra:
        world.ledger.register(a, 2 * ETH, "http://juror", Role.WORKER)
    return extra


def test_lone_liar_is_slashed_by_the_jury(world: World) -> None:
    """Issue 13 finding 8a: one liar used to void a 2-worker task for free."""
    led, (w0, w1, _) = world.ledger, world.workers
    jurors = _more_workers(world, 3)
    m = Market(world)
    gid, (s0, s1) = _escalate(world, m, {w0: GOOD, w1: BAD})
    _jury(world, gid, dict.fromkeys(jurors, GOOD))
    assert led.slot(s0).state == SlotState.PAID and led.slot(s1).state == SlotState.SLASHED
    assert led.task_owed(w0) == FEE + BOND and led.task_owed(w1) == 0
    share = BOND * 5000 // 10000 // 3
    assert all(led.task_owed(j) == BOND + share for j in jurors)
    conserved(led)


def test_requesters_own_majority_cannot_outvote_an_honest_worker(world: World) -> None:
    """Issue 13 finding 8b and must-exist 6: two requester-controlled workers of three
    agree on a wrong result; the fresh jury pays the honest one and slashes both."""
    led, (honest, own1, own2) = world.ledger, world.workers
    jurors = _more_workers(world, 3)
    m = Market(world)
    gid, slots = _escalate(
        world, m, {honest: GOOD, own1: BAD, own2: BAD}, state=TaskState.CONTESTABLE
    )
    with pytest.raises(Reverted, match="tasks: agrees with the verdict"):
        led.contest(own1, gid, 1, BOND)
    led.contest(honest, gid, 0, BOND)
    assert led.task(gid).state == TaskState.ESCALATED
    with pytest.raises(Reverted, match="tasks: a member cannot judge"):
        led.enroll(own1, gid, b"\x01" * 32, 0, BOND)
    with pytest.raises(Reverted, match="tasks: the requester cannot judge"):
        led.enroll(world.requester, gid, b"\x01" * 32, 0, BOND)
    _jury(world, gid, dict.fromkeys(jurors, NEAR))
    states = [led.slot(s).state for s in slots]
    assert states == [SlotState.PAID, SlotState.SLASHED, SlotState.SLASHED]
    assert led.task_owed(honest) == FEE + 2 * BOND  # its contest bond comes back
    assert led.task_owed(own1) == led.task_owed(own2) == 0
    conserved(led)


def test_uncontested_majority_slashes_the_cheater(world: World) -> None:
    led, (w0, w1, w2) = world.ledger, world.workers
    m = Market(world)
    gid, slots = _escalate(world, m, {w0: GOOD, w1: BAD, w2: NEAR}, state=TaskState.CONTESTABLE)
    with pytest.raises(Reverted, match="tasks: contest window open"):
        led.finalize_task(world.others[0], gid)
    world.chain.advance_time(WINDOW)
    with pytest.raises(Reverted, match="tasks: contest window closed"):
        led.contest(w1, gid, 1, BOND)
    led.finalize_task(world.others[0], gid)
    assert [led.slot(s).state for s in slots] == [
        SlotState.PAID,
        SlotState.SLASHED,
        SlotState.PAID,
    ]
    assert led.task_owed(world.requester) == FEE
    conserved(led)


def test_too_few_jurors_voids_without_slashing(world: World) -> None:
    led, (w0, w1, _) = world.ledger, world.workers
    m = Market(world)
    gid, _ = _escalate(world, m, {w0: GOOD, w1: BAD})
    world.chain.advance_time(WINDOW)
    led.draw_jury(world.others[0], gid)
    world.chain.advance_time(1)
    world.chain.advance_time(1)
    led.draw_jury(world.others[0], gid)
    assert led.task(gid).state == TaskState.VOID
    assert led.task_owed(w0) == led.task_owed(w1) == BOND
    assert led.task_owed(world.requester) == 2 * FEE
    conserved(led)


def test_audit_catches_an_aimed_check(world: World) -> None:
    """Issue 15 finding 2: the decision is keccak(secret, commitment) < threshold with a
    committed secret; checking a primary the key says is unchecked forfeits the bond."""
    led, (w0, w1, w2) = world.ledger, world.workers
    m = Market(world, threshold=0)  # promises: nothing is checked
    slots = m.post([w0, w1, w2])
    for w, s in zip((w0, w1, w2), slots, strict=True):
        c = m.commit(w, s, GOOD)
    assert not sampled(m.secret, c, 0)
    world.chain.advance_time(PERIOD)
    m.group(slots)  # aimed at w0 anyway
    with pytest.raises(Reverted, match="tasks: key not revealed"):
        led.audit_slot(world.others[1], slots[0])
    with pytest.raises(Reverted, match="tasks: secret does not open the key"):
        led.reveal_key(world.requester, m.key_id, b"\x00" * 32)
    led.reveal_key(world.requester, m.key_id, m.secret)
    with pytest.raises(Reverted, match="tasks: key revealed"):
        m.post([w0])
    with pytest.raises(Reverted, match="tasks: checker slots are not sampled"):
        led.audit_slot(world.others[1], slots[1])
    led.audit_slot(world.others[1], slots[0])
    assert led.key(m.key_id).failed and led.task_owed(world.others[1]) == ETH
    conserved(led)


def test_audit_passes_an_honest_key(world: World) -> None:
    led, w0 = world.ledger, world.workers[0]
    m = Market(world, threshold=0)
    (slot,) = m.post([w0])
    m.commit(w0, slot, GOOD)
    led.reveal_key(world.requester, m.key_id, m.secret)
    with pytest.raises(Reverted, match="tasks: sampling decision respected"):
        led.audit_slot(world.others[1], slot)
    with pytest.raises(Reverted, match="tasks: audit window open"):
        led.release_key(world.others[1], m.key_id)
    world.chain.advance_time(3600)
    led.release_key(world.others[1], m.key_id)
    assert led.task_owed(world.requester) == ETH


def test_unrevealed_key_bond_is_burned(world: World) -> None:
    led = world.ledger
    m = Market(world)
    with pytest.raises(Reverted, match="tasks: key not due"):
        led.release_key(world.others[0], m.key_id)
    world.chain.advance_time(10 * PERIOD)
    led.release_key(world.others[0], m.key_id)
    assert led.tasks.functions.burned().call() == ETH
    conserved(led)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"commit_period": 10}, "tasks: commit period too short"),
        ({"profiles": [7]}, "tasks: bad profile"),
        ({"fee_each": 0}, "tasks: fee must split evenly"),
    ],
)
def test_post_reverts(world: World, kwargs: dict[str, object], reason: str) -> None:
    m = Market(world)
    args: dict[str, object] = {
        "slot_ids": [b"\x01" * 32],
        "workers": [world.workers[0]],
        "specs": [SPEC],
        "profiles": [0],
        "commit_period": PERIOD,
        "fee_each": FEE,
    }
    args.update(kwargs)
    with pytest.raises(Reverted, match=reason):
        world.ledger.post_slots(world.requester, m.key_id, **args)  # type: ignore[arg-type]
