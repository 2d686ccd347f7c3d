"""Shared test helpers (plain functions, no fixtures)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest

from deai.ledger.chain import Chain
from deai.ledger.client import Ledger
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import LedgerConfig, RoundResult, result_commitment

SALT = b"\x5a" * 32
ETH = 10**18
DELAY = 1_000  # withdrawal delay, s (> 2 * MIN_PERIOD + FINALIZE_GRACE = 900)
PERIOD = 300  # the protocol's minimum window (MIN_PERIOD)
CONFIG = LedgerConfig(
    min_stake=ETH, withdrawal_delay=DELAY, job_slash=ETH // 2, task_slash=ETH // 10
)
BACKENDS = ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)]


@dataclass
class World:
    """A deployed ledger plus named accounts."""

    ledger: Ledger
    chain: Chain
    requester: str
    validators: list[str]  # joined with validator role, stakes 2, 3, 4 ETH
    workers: list[str]  # joined with worker role, 2 ETH each
    others: list[str]  # not joined


def create_job(world: World, budget: int, rounds: int, size: int, spec: bytes) -> int:
    """A job with the protocol's minimum windows (claims open for 10 of them)."""
    return world.ledger.create_job(
        world.requester,
        budget=budget,
        spec_hash=spec,
        rounds=rounds,
        committee_size=size,
        commit_period=PERIOD,
        reveal_period=PERIOD,
        claim_period=10 * PERIOD,
    )


def result_for(
    job_id: int, payouts: Mapping[str, int], tag: int = 1
) -> tuple[RoundResult, PayoutTree]:
    tree = PayoutTree(job_id, payouts)
    return RoundResult(bytes([tag]) * 32, tree.root, tree.total), tree


def drawn_job(
    world: World,
    create: Callable[[], int],
    ok: Callable[[list[str], list[int]], bool] = lambda m, s: True,
    tries: int = 60,
) -> int:
    """Create jobs with ``create`` and draw round 0 until the committee (members, seats)
    satisfies ``ok``: seats are random, tests that need a shape ask for it."""
    led = world.ledger
    for _ in range(tries):
        job_id = create()
        led.ensure_drawn(world.others[0], job_id)
        if ok(led.committee(job_id), led.committee_seats(job_id)):
            return job_id
    raise AssertionError("no committee of the wanted shape was drawn")


def distinct(n: int) -> Callable[[list[str], list[int]], bool]:
    """Shape: ``n`` distinct members with one seat each."""
    return lambda members, seats: len(members) == n and all(s == 1 for s in seats)


def commit_all(
    ledger: Ledger, job_id: int, round_index: int, votes: Mapping[str, RoundResult]
) -> None:
    if votes:
        ledger.ensure_drawn(next(iter(votes)), job_id)
    for member, result in votes.items():
        ledger.commit(
            member,
            job_id,
            round_index,
            result_commitment(job_id, round_index, member, result, SALT),
        )


def reveal_all(
    ledger: Ledger, job_id: int, round_index: int, votes: Mapping[str, RoundResult]
) -> None:
    for member, result in votes.items():
        ledger.reveal(member, job_id, round_index, result, SALT)


def play_round(
    ledger: Ledger,
    job_id: int,
    round_index: int,
    votes: Mapping[str, RoundResult],
    finalizer: str,
) -> None:
    """Commit, reveal and finalize with the given per-member votes."""
    commit_all(ledger, job_id, round_index, votes)
    reveal_all(ledger, job_id, round_index, votes)
    ledger.finalize_round(finalizer, job_id, round_index)


def escalated_seat(first_seats: int, seats: int, slash: int = CONFIG.job_slash) -> int:
    """An escalated seat's penalty, by the contract's rule: the first committee's
    SLASH_AMOUNT * seats spread over the escalated committee's ``seats``, rounded up."""
    return -(-slash * first_seats // seats)


def play_escalation(
    ledger: Ledger,
    chain: Chain,
    job_id: int,
    round_index: int,
    vote_of: Callable[[str], RoundResult],
    finalizer: str,
    first_seats: int,
) -> dict[str, int]:
    """Play an escalated round's second committee: draw it, every member commits
    ``vote_of(member)`` (locking what is free of its seats' penalty), reveal, finalize.
    Returns the seats of each member of the second committee."""
    assert ledger.round(job_id).level == 1
    ledger.ensure_drawn(finalizer, job_id)
    members, seats = ledger.committee(job_id), ledger.committee_seats(job_id)
    per_seat = escalated_seat(first_seats, ledger.round(job_id).seats)
    for m, n in zip(members, seats, strict=True):
        node = ledger.node(m)
        free = max(node.stake - node.locked, 0)
        commitment = result_commitment(job_id, round_index, m, vote_of(m), SALT)
        ledger.commit(m, job_id, round_index, commitment)
        assert ledger.node(m).locked == node.locked + min(per_seat * n, free)
    for m in members:
        ledger.reveal(m, job_id, round_index, vote_of(m), SALT)
    ledger.finalize_round(finalizer, job_id, round_index)
    return dict(zip(members, seats, strict=True))
