"""Jobs: a split round escalates to a fresh, larger committee before anyone is slashed
for dissent (issue #13: an honest member outvoted by a lucky seat draw lost its stake).

The attack first: a liar holding 3 of a round's 4 seats votes a root paying itself; under
the old rule (a 3/4 winner slashes every revealed dissenter) the honest member lost its
stake there and then. Now the split escalates, the first committee stays locked, and the
round is decided over the seats of both committees."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from ledger_helpers import (
    CONFIG,
    ETH,
    PERIOD,
    SALT,
    World,
    commit_all,
    create_job,
    drawn_job,
    escalated_seat,
    play_escalation,
    result_for,
    reveal_all,
)

from deai.ledger.client import Ledger
from deai.ledger.errors import Reverted
from deai.ledger.types import RoundResult, result_commitment

SPEC = b"\x12" * 32
SLASH = ETH // 2  # CONFIG.job_slash, per seat


def _job(world: World, size: int, rounds: int = 1) -> int:
    return create_job(world, 10 * ETH, rounds, size, SPEC)


def _verdict(
    drawn: int, votes: Mapping[str, tuple[int, RoundResult]]
) -> tuple[RoundResult | None, bool]:
    """The contract's rule, written out: a result wins with a strict majority of every
    drawn seat of both committees; dissent is punished at 3/4 of them."""
    tally: dict[RoundResult, int] = {}
    for seats, vote in votes.values():
        tally[vote] = tally.get(vote, 0) + seats
    for vote, seats in tally.items():
        if 2 * seats > drawn:
            return vote, 4 * seats >= 3 * drawn
    return None, False


def _outvoted(world: World) -> tuple[int, str, str, RoundResult, RoundResult]:
    """A round whose first committee gives one member 3 of 4 seats (the liar) and one
    member the fourth (honest); each votes its own root."""
    led = world.ledger
    job_id = drawn_job(world, lambda: _job(world, 4), lambda m, s: sorted(s) == [1, 3])
    members, seats = led.committee(job_id), led.committee_seats(job_id)
    liar, honest = members[seats.index(3)], members[seats.index(1)]
    good, _ = result_for(job_id, {world.others[0]: ETH})
    bad, _ = result_for(job_id, {liar: ETH}, tag=9)
    commit_all(led, job_id, 0, {liar: bad, honest: good})
    reveal_all(led, job_id, 0, {liar: bad, honest: good})
    return job_id, liar, honest, good, bad


def _slashed(led: Ledger, job_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in led.events("MemberSlashed", filters={"job_id": job_id}):
        out[e.args["member"]] = out.get(e.args["member"], 0) + int(e.args["amount"])
    return out


def test_a_three_quarter_liar_no_longer_slashes_the_honest_member_outright(
    world: World,
) -> None:
    """The attack: 3 of 4 seats vote the liar's root. Before the fix the honest member
    was slashed at this finalize; now the round escalates, nobody is slashed, nothing is
    settled, and both first-committee members stay locked."""
    led = world.ledger
    job_id, liar, honest, _, _ = _outvoted(world)
    stakes = {m: led.node(m).stake for m in (liar, honest)}
    led.finalize_round(world.others[1], job_id, 0)
    assert _slashed(led, job_id) == {}
    assert {m: led.node(m).stake for m in stakes} == stakes
    assert led.node(liar).locked == 3 * SLASH and led.node(honest).locked == SLASH
    assert led.events("RoundSettled", filters={"job_id": job_id}) == []
    rnd = led.round(job_id)
    assert (rnd.index, rnd.level, rnd.drawn) == (0, 1, False)
    (esc,) = led.events("RoundEscalated", filters={"job_id": job_id})
    assert esc.args["round"] == 0 and esc.args["commit_deadline"] == rnd.commit_deadline
    with pytest.raises(Reverted, match="jobs: round not over"):  # the new windows hold
        led.finalize_round(world.others[1], job_id, 0)


def test_the_escalated_round_is_decided_over_both_committees(world: World) -> None:
    """Every member of the second committee votes as it did in the first (the liar
    lies again, the honest vote the honest root): the winner, the settled root and every
    slash follow the rule over both committees' seats, and the honest member is never
    slashed unless the liar holds 3/4 of all of them."""
    led = world.ledger
    job_id, liar, honest, good, bad = _outvoted(world)
    stakes = {v: led.node(v).stake for v in world.validators}
    led.finalize_round(world.others[1], job_id, 0)
    second = play_escalation(
        led, world.chain, job_id, 0, lambda m: bad if m == liar else good, world.others[1], 4
    )
    per_seat = escalated_seat(4, sum(second.values()))
    revealed = [e.args["member"] for e in led.events("Revealed", filters={"job_id": job_id})]
    assert revealed[:2] == [liar, honest]  # the first committee's reveals
    votes: dict[tuple[str, int], tuple[int, RoundResult]] = {
        (liar, 0): (3, bad),
        (honest, 0): (1, good),
    }
    for m in revealed[2:]:  # the second committee
        votes[(m, 1)] = (second[m], bad if m == liar else good)
    assert len(revealed) == 2 + len(second)
    winner, punish = _verdict(4 + sum(second.values()), votes)
    view = led.job(job_id)
    if winner is None:
        assert view.payable_total == 0
        assert led.events("RoundAborted", filters={"job_id": job_id})
    else:
        assert view.root == winner.root
    want: dict[str, int] = {}
    for (m, level), (seats, vote) in votes.items():
        if punish and vote != winner:
            want[m] = want.get(m, 0) + seats * (SLASH if level == 0 else per_seat)
    slashed = _slashed(led, job_id)
    assert slashed == want
    if winner != bad:  # only a liar holding 3/4 of both draws' seats could slash them
        assert all(m == liar for m in slashed)
    for v in world.validators:
        assert led.node(v).locked == 0  # every lock released at the final finalize
        assert led.node(v).stake == stakes[v] - slashed.get(v, 0)


def test_an_escalation_nobody_draws_slashes_no_dissenter(world: World) -> None:
    """If the second committee is never drawn (its commit window passed), the round is
    decided by the first committee's seats alone, and no dissenter is slashed: nobody
    checked the split."""
    led = world.ledger
    job_id, liar, honest, _, bad = _outvoted(world)
    stakes = {m: led.node(m).stake for m in (liar, honest)}
    led.finalize_round(world.others[1], job_id, 0)
    world.chain.advance_time(PERIOD + 1)
    led.finalize_round(world.others[1], job_id, 0)
    assert led.job(job_id).root == bad.root  # 3 of 4 drawn seats: a strict majority
    assert _slashed(led, job_id) == {}
    assert {m: led.node(m).stake for m in stakes} == stakes
    assert led.node(liar).locked == 0 and led.node(honest).locked == 0


def test_a_silent_first_committee_member_is_slashed_at_the_escalation(world: World) -> None:
    """A member that committed to the split round and never revealed is slashed at
    once (an accepted duty, failed), and its stake is not held for the verdict."""
    led = world.ledger
    job_id = drawn_job(world, lambda: _job(world, 3), lambda m, s: len(m) == 3)
    a, b, c = led.committee(job_id)
    seats = dict(zip((a, b, c), led.committee_seats(job_id), strict=True))
    r1, _ = result_for(job_id, {world.others[0]: ETH})
    r2, _ = result_for(job_id, {world.others[0]: ETH}, tag=7)
    commit_all(led, job_id, 0, {a: r1, b: r2, c: r1})
    reveal_all(led, job_id, 0, {a: r1, b: r2})  # c went silent
    world.chain.advance_time(2 * PERIOD)
    led.finalize_round(world.others[1], job_id, 0)
    assert led.round(job_id).level == 1
    assert _slashed(led, job_id) == {c: seats[c] * SLASH}
    assert led.node(c).locked == 0
    assert led.node(a).locked == seats[a] * SLASH and led.node(b).locked == seats[b] * SLASH


def test_a_unanimous_round_never_escalates(world: World) -> None:
    led = world.ledger
    job_id = drawn_job(world, lambda: _job(world, 3, rounds=2), lambda m, s: len(m) >= 2)
    members = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    commit_all(led, job_id, 0, dict.fromkeys(members, good))
    reveal_all(led, job_id, 0, dict.fromkeys(members, good))
    led.finalize_round(world.others[1], job_id, 0)
    rnd = led.round(job_id)
    assert (rnd.index, rnd.level) == (1, 0)
    assert led.events("RoundEscalated", filters={"job_id": job_id}) == []


def test_a_round_escalates_at_most_once(world: World) -> None:
    """The second committee splits again: the round is decided, never escalated twice
    (a liar cannot hold a round open forever)."""
    led = world.ledger
    job_id, liar, _, good, bad = _outvoted(world)
    led.finalize_round(world.others[1], job_id, 0)
    play_escalation(
        led, world.chain, job_id, 0, lambda m: bad if m == liar else good, world.others[1], 4
    )
    assert len(led.events("RoundEscalated", filters={"job_id": job_id})) == 1
    assert led.job(job_id).state.name == "DONE"


def test_an_escalated_member_locks_what_is_free_and_is_slashed_all_the_same(
    world: World,
) -> None:
    """A second-committee member whose free stake is short of its escalated penalty (the
    first committee's lock holds part of it, and it unstakes most of the rest after the
    draw) still accepts and locks only what is free; when it then fails the duty
    (commits, never reveals) its full penalty is taken all the same, pending stake
    included, so shrinking free stake first buys no cheap vote."""
    led = world.ledger
    minimum = CONFIG.min_stake
    short: list[tuple[str, int, int]] = []  # (member, seats, active stake it keeps)
    for _ in range(3):  # the liar sits in the 16 seats with probability > 98 %
        try:
            job_id, liar, honest, good, _ = _outvoted(world)
        except Reverted as e:  # an earlier try's round still locks the liar's stake
            assert "not enough free stake" in e.reason
            continue
        led.finalize_round(world.others[1], job_id, 0)
        led.ensure_drawn(world.others[1], job_id)
        members, seats = led.committee(job_id), led.committee_seats(job_id)
        per_seat = escalated_seat(4, sum(seats))
        for m, n in zip(members, seats, strict=True):
            node = led.node(m)
            keep = max(minimum, node.locked + per_seat * n // 2)
            if keep - node.locked < per_seat * n and keep < node.stake:
                short.append((m, n, keep))
        if short:
            break
    assert short, "no second-committee member can be left short of its penalty"
    short.sort(key=lambda t: t[0] != liar)  # the liar first: its lock is the largest
    target, n, keep = short[0]
    led.unstake(target, led.node(target).stake - keep)
    before = {m: led.node(m) for m in members}
    free = before[target].stake - before[target].locked
    assert 0 < free < per_seat * n
    for m in members:
        led.commit(m, job_id, 0, result_commitment(job_id, 0, m, good, SALT))
    assert led.node(target).locked == before[target].locked + free  # all it had
    for m in members:  # everyone committed: reveals are open
        if m != target:
            led.reveal(m, job_id, 0, good, SALT)
    world.chain.advance_time(2 * PERIOD + 1)  # past the reveal deadline
    held = before[target].stake + before[target].pending
    led.finalize_round(world.others[1], job_id, 0)
    (slash,) = [
        e
        for e in led.events("MemberSlashed", filters={"job_id": job_id})
        if e.args["member"] == target and not e.args["revealed"]
    ]
    assert int(slash.args["amount"]) == per_seat * n > free
    after = led.node(target)
    assert held - (after.stake + after.pending) >= per_seat * n
    # only other jobs' locks stay (this round's first-committee lock is released too)
    first = {liar: 3 * SLASH, honest: SLASH}.get(target, 0)
    assert after.locked == before[target].locked - first
