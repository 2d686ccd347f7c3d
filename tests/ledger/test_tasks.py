"""Tasks: k assigned workers commit-reveal a result hash; majority paid, minority slashed."""

from __future__ import annotations

import pytest
from ledger_helpers import ETH, SALT, World

from deai.ledger.client import Ledger
from deai.ledger.errors import Reverted
from deai.ledger.types import TaskState, task_commitment

SPEC = b"\x22" * 32
PERIOD = 50
R1, R2, R3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def new_task(world: World, fee: int = 3 * ETH) -> int:
    return world.ledger.create_task(
        world.requester,
        fee=fee,
        spec_hash=SPEC,
        workers=world.workers,
        commit_period=PERIOD,
        reveal_period=PERIOD,
    )


def commit_reveal(led: Ledger, task_id: int, answers: dict[str, bytes]) -> None:
    for w, r in answers.items():
        led.task_commit(w, task_id, task_commitment(task_id, w, r, SALT))
    for w, r in answers.items():
        led.task_reveal(w, task_id, r, SALT)


@pytest.mark.parametrize(
    ("which", "fee", "periods", "reason"),
    [
        ("none", ETH, (PERIOD, PERIOD), "tasks: no workers"),
        ("assigned", 2, (PERIOD, PERIOD), "tasks: fee too small"),
        ("assigned", ETH, (0, PERIOD), "tasks: zero period"),
        ("assigned", ETH, (900, 200), "tasks: task too long"),
        ("validator", ETH, (PERIOD, PERIOD), "tasks: worker not eligible"),
        ("duplicate", ETH, (PERIOD, PERIOD), "tasks: duplicate worker"),
    ],
)
def test_create_task_reverts(
    world: World, which: str, fee: int, periods: tuple[int, int], reason: str
) -> None:
    w = world.workers
    workers = {
        "none": [],
        "assigned": w,
        "validator": [world.validators[0]],
        "duplicate": [w[0], w[1], w[0]],
    }[which]
    with pytest.raises(Reverted) as info:
        world.ledger.create_task(
            world.requester,
            fee=fee,
            spec_hash=SPEC,
            workers=workers,
            commit_period=periods[0],
            reveal_period=periods[1],
        )
    assert info.value.reason == reason


def test_majority_paid_minority_slashed(world: World) -> None:
    led, (w0, w1, w2) = world.ledger, world.workers
    task_id = new_task(world, fee=3 * ETH + 1)
    assert led.task_workers(task_id) == world.workers
    commit_reveal(led, task_id, {w0: R1, w1: R1, w2: R2})
    led.finalize_task(world.others[0], task_id)
    task = led.task(task_id)
    share = (3 * ETH + 1) // 2
    assert (task.state, task.result_hash, task.paid) == (TaskState.SETTLED, R1, 2 * share)
    assert task.refunded == 3 * ETH + 1 - 2 * share and task.slashed == ETH // 10
    assert led.task_owed(w0) == share and led.task_owed(w2) == 0
    assert led.node(w2).stake == 2 * ETH - ETH // 10
    (ev,) = led.events("WorkerSlashed")
    assert ev.args["worker"] == w2 and ev.args["revealed"]
    led.task_withdraw(w0)
    assert led.task_owed(w0) == 0
    with pytest.raises(Reverted, match="tasks: nothing owed"):
        led.task_withdraw(w0)
    with pytest.raises(Reverted, match="tasks: task not open"):
        led.finalize_task(world.others[0], task_id)


def test_all_different_refunds_without_slashing(world: World) -> None:
    led, (w0, w1, w2) = world.ledger, world.workers
    task_id = new_task(world)
    commit_reveal(led, task_id, {w0: R1, w1: R2, w2: R3})
    led.finalize_task(world.others[0], task_id)
    task = led.task(task_id)
    assert task.state == TaskState.REFUNDED and task.refunded == 3 * ETH and task.slashed == 0
    assert led.task_owed(world.requester) == 3 * ETH


def test_timeouts_slash_silent_workers(world: World) -> None:
    led, (w0, w1, w2) = world.ledger, world.workers
    task_id = new_task(world)
    led.task_commit(w0, task_id, task_commitment(task_id, w0, R1, SALT))
    led.task_commit(w1, task_id, task_commitment(task_id, w1, R1, SALT))
    with pytest.raises(Reverted, match="tasks: reveal not open"):
        led.task_reveal(w0, task_id, R1, SALT)
    with pytest.raises(Reverted, match="tasks: task not over"):
        led.finalize_task(w0, task_id)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="tasks: commit closed"):
        led.task_commit(w2, task_id, task_commitment(task_id, w2, R1, SALT))
    led.task_reveal(w0, task_id, R1, SALT)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="tasks: reveal closed"):
        led.task_reveal(w1, task_id, R1, SALT)
    led.finalize_task(world.others[0], task_id)  # 1 of 3 revealed: no majority
    task = led.task(task_id)
    assert task.state == TaskState.REFUNDED and task.slashed == 2 * (ETH // 10)
    assert {e.args["worker"] for e in led.events("WorkerSlashed")} == {w1, w2}


def test_task_reveal_reverts(world: World) -> None:
    led, (w0, w1, w2) = world.ledger, world.workers
    task_id = new_task(world)
    for w in (w0, w1, w2):
        led.task_commit(w, task_id, task_commitment(task_id, w, R1, SALT))
    with pytest.raises(Reverted, match="tasks: already committed"):
        led.task_commit(w0, task_id, task_commitment(task_id, w0, R1, SALT))
    with pytest.raises(Reverted, match="tasks: reveal does not match"):
        led.task_reveal(w0, task_id, R2, SALT)
    with pytest.raises(Reverted, match="tasks: empty result"):
        led.task_reveal(w0, task_id, b"\x00" * 32, SALT)
    with pytest.raises(Reverted, match="tasks: not a worker"):
        led.task_reveal(world.others[0], task_id, R1, SALT, index=0)
    with pytest.raises(Reverted, match="tasks: bad index"):
        led.task_reveal(w0, task_id, R1, SALT, index=3)
    led.task_reveal(w0, task_id, R1, SALT)
    with pytest.raises(Reverted, match="tasks: already revealed"):
        led.task_reveal(w0, task_id, R1, SALT)
    led.task_reveal(w1, task_id, R1, SALT)
    led.task_reveal(w2, task_id, R1, SALT)
    led.finalize_task(w0, task_id)  # everyone revealed: no need to wait
    assert led.task(task_id).paid == 3 * ETH
