"""Jobs: creation, drawing, committee rounds (settle, dissent, abort, timeouts), claims,
sweep."""

from __future__ import annotations

import pytest
from ledger_helpers import (
    ETH,
    PERIOD,
    SALT,
    World,
    commit_all,
    create_job,
    distinct,
    drawn_job,
    play_round,
    result_for,
    reveal_all,
)

from deai.ledger.committee import draw_committee, round_seed, seat_counts
from deai.ledger.errors import Reverted
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import JobState, RoundResult, result_commitment

SPEC = b"\x11" * 32


def new_job(world: World, budget: int = 10 * ETH, rounds: int = 2, size: int = 3) -> int:
    return _create(world, budget, rounds, size)


def shaped(world: World, rounds: int = 2, n: int = 3) -> int:
    """A job whose round 0 has ``n`` distinct single-seat members."""
    return drawn_job(world, lambda: _create(world, 10 * ETH, rounds, n), distinct(n))


def _create(world: World, budget: int, rounds: int, size: int) -> int:
    return create_job(world, budget, rounds, size, SPEC)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"rounds": 0}, "jobs: bad rounds"),
        ({"committee_size": 0}, "jobs: bad committee size"),
        ({"committee_size": 17}, "jobs: bad committee size"),
        ({"commit_period": 0}, "jobs: period too short"),
        ({"reveal_period": PERIOD - 1}, "jobs: period too short"),
        ({"commit_period": 1000, "reveal_period": 400}, "jobs: round too long"),
        ({"claim_period": PERIOD - 1}, "jobs: claim period too short"),
        ({"budget": 2, "rounds": 3}, "jobs: budget too small"),
    ],
)
def test_create_job_reverts(world: World, kwargs: dict[str, int], reason: str) -> None:
    args = {
        "budget": ETH,
        "rounds": 2,
        "committee_size": 3,
        "commit_period": PERIOD,
        "reveal_period": PERIOD,
        "claim_period": PERIOD,
    } | kwargs
    with pytest.raises(Reverted) as info:
        world.ledger.create_job(world.requester, spec_hash=SPEC, **args)
    assert info.value.reason == reason


def test_create_job_opens_round_with_drawn_committee(world: World) -> None:
    led = world.ledger
    job_id = led.create_job(
        world.requester,
        budget=10 * ETH + 1,
        spec_hash=SPEC,
        rounds=3,
        committee_size=2,
        commit_period=PERIOD,
        reveal_period=PERIOD,
        claim_period=PERIOD,
    )
    job, rnd = led.job(job_id), led.round(job_id)
    deposit = 10 * ETH + 1
    assert (job.deposit, job.round_budget, job.state) == (deposit, deposit // 3, JobState.OPEN)
    rest = deposit - 3 * (deposit // 3)  # division remainder, credited back at once
    assert rest > 0 and job.refunded == rest and led.owed(world.requester) == rest
    assert rnd.index == 0 and not rnd.drawn and led.committee(job_id) == []
    assert rnd.reveal_deadline - rnd.commit_deadline == PERIOD
    (opened,) = led.events("RoundOpened", filters={"job_id": job_id})
    assert opened.args["seed_block"] == rnd.seed_block == opened.block
    assert led.draw_round(world.others[0], job_id)  # next block: the seed block's hash exists
    rnd = led.round(job_id)
    block_hash = bytes(world.chain.w3.eth.get_block(rnd.seed_block)["hash"])
    assert rnd.seed == round_seed(job_id, 0, block_hash)
    seats = draw_committee(rnd.seed, led.validator_slots(), 2)
    assert seats == led.draw(rnd.seed, 2)
    assert (led.committee(job_id), led.committee_seats(job_id)) == seat_counts(seats)
    assert rnd.seats == 2 and rnd.size == len(set(seats))
    (ev,) = led.events("RoundDrawn", filters={"job_id": job_id})
    assert ev.args["committee"] == led.committee(job_id) and ev.args["seed"] == rnd.seed
    with pytest.raises(Reverted, match="jobs: already drawn"):
        led.draw_round(world.others[0], job_id)


def test_draw_waits_for_the_seed_block_and_rearms_after_a_stake_change(world: World) -> None:
    led = world.ledger
    fn = led.jobs.functions
    job_id = new_job(world)
    # the seed is the hash of the opening block: not drawable inside that block
    with pytest.raises(Exception, match="jobs: seed not ready"):
        fn.draw_round(job_id).call({"from": world.others[0]}, block_identifier="latest")
    led.add_stake(world.validators[0], ETH)  # a node re-weights after the seed block
    assert not led.draw_round(world.others[0], job_id)  # re-armed, not drawn
    (ev,) = led.events("SeedRearmed", filters={"job_id": job_id})
    assert ev.args["seed_block"] == led.round(job_id).seed_block
    assert led.draw_round(world.others[0], job_id)
    world.chain.advance_time(PERIOD)
    job2 = new_job(world)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="jobs: commit closed"):
        led.draw_round(world.others[0], job2)
    led.finalize_round(world.others[0], job2, 0)  # undrawn: aborted, nobody slashed
    assert led.job(job2).refunded == 5 * ETH and led.job(job2).slashed == 0


def test_rearm_follows_every_change_of_the_validator_tree(world: World) -> None:
    """The long stateful run's ``grinder_reweights`` (issue #13): a worker re-weighting
    after the seed block moves nothing the draw reads, so the draw stands; a slash that
    someone triggers after the seed block (finalizing another job whose member went
    silent) moves the tree, so the draw re-arms: a finalize caller cannot pick the
    committee by choosing when to slash."""
    led = world.ledger
    job_id = new_job(world)
    led.add_stake(world.workers[0], ETH)  # not a validator: the tree is unchanged
    assert led.draw_round(world.others[0], job_id)
    silent = shaped(world, rounds=1)
    member = led.committee(silent)[0]
    bad, _ = result_for(silent, {member: ETH}, tag=7)
    commit_all(led, silent, 0, {member: bad})
    world.chain.advance_time(2 * PERIOD)
    target = new_job(world)  # opens now; its seed block's hash is public from the next block
    stake = led.node(member).stake
    led.finalize_round(world.others[1], silent, 0)  # slashes the silent member
    assert led.node(member).stake < stake
    assert not led.draw_round(world.others[0], target)  # re-armed, not drawn on the old seed
    assert (
        led.round(target).seed_block
        > led.events("RoundOpened", filters={"job_id": target})[0].args["seed_block"]
    )
    assert led.draw_round(world.others[0], target)


def test_round_settles_by_majority_spares_dissenter_and_pays_claims(world: World) -> None:
    """A split escalates (tests/ledger/test_escalation.py); where nobody draws the
    second committee, the first one's bare majority (2 of 3 seats) settles, and the
    dissenter keeps its stake: it may be the honest member outvoted by a lucky draw
    (issue #13)."""
    led = world.ledger
    job_id = shaped(world, rounds=1)
    members = led.committee(job_id)
    payee_a, payee_b = world.workers[0], world.others[0]
    good, tree = result_for(job_id, {payee_a: 3 * ETH, payee_b: ETH})
    bad, _ = result_for(job_id, {payee_a: 5 * ETH}, tag=9)
    stake_before = led.node(members[2]).stake
    commit_all(led, job_id, 0, {members[0]: good, members[1]: good, members[2]: bad})
    assert [led.node(m).locked for m in members] == [ETH // 2] * 3  # accepted: locked
    reveal_all(led, job_id, 0, {members[0]: good, members[1]: good, members[2]: bad})
    led.finalize_round(world.requester, job_id, 0)
    assert led.round(job_id).level == 1 and led.job(job_id).payable_total == 0
    world.chain.advance_time(PERIOD + 1)  # nobody draws the second committee
    led.finalize_round(world.requester, job_id, 0)
    job = led.job(job_id)
    assert (job.root, job.model_hash, job.payable_total) == (good.root, good.model_hash, 4 * ETH)
    assert job.refunded == 6 * ETH  # budget 10 ETH, 4 paid
    assert job.slashed == 0
    assert led.node(members[2]).stake == stake_before
    assert not led.events("MemberSlashed", filters={"job_id": job_id})
    assert [led.node(m).locked for m in members] == [0, 0, 0]  # final: released
    (settled,) = led.events("RoundSettled")
    assert settled.args["votes"] == 2
    # claims: a third party submits, the payee is paid
    before = led.balance(payee_b)
    led.claim(world.others[1], job_id, payee_b, ETH, tree.proof(payee_b))
    assert led.balance(payee_b) - before == ETH
    led.claim_many(world.others[1], job_id, tree, [payee_a])
    assert led.claimed(job_id, payee_a) == 3 * ETH
    assert led.job(job_id).claimed_total == 4 * ETH
    assert led.escrow(job_id) == 10 * ETH - 4 * ETH - 6 * ETH


def test_claims_open_when_the_job_is_done_and_pay_the_final_root(world: World) -> None:
    led = world.ledger
    job_id = shaped(world, rounds=2)
    payee = world.others[0]
    members = led.committee(job_id)
    r0, t0 = result_for(job_id, {payee: ETH})
    play_round(led, job_id, 0, dict.fromkeys(members, r0), world.requester)
    with pytest.raises(Reverted, match="jobs: claims closed"):  # the job is still open
        led.claim(payee, job_id, payee, ETH, t0.proof(payee))
    led.ensure_drawn(payee, job_id)
    members = led.committee(job_id)
    r1, t1 = result_for(job_id, {payee: 3 * ETH}, tag=2)
    r1 = RoundResult(r1.model_hash, r1.root, 2 * ETH)  # this round adds 2 ETH
    play_round(led, job_id, 1, dict.fromkeys(members, r1), world.requester)
    with pytest.raises(Reverted, match="jobs: invalid proof"):  # the old root is gone
        led.claim(payee, job_id, payee, ETH, t0.proof(payee))
    before = led.balance(world.requester)
    led.claim(world.requester, job_id, payee, 3 * ETH, t1.proof(payee))
    assert led.claimed(job_id, payee) == 3 * ETH
    assert led.job(job_id).state == JobState.DONE
    assert before > led.balance(world.requester)  # sender paid gas, payee got the money
    with pytest.raises(Reverted, match="jobs: nothing to claim"):
        led.claim(payee, job_id, payee, 3 * ETH, t1.proof(payee))


def test_no_majority_aborts_and_refunds(world: World) -> None:
    led = world.ledger
    job_id = shaped(world)
    m = led.committee(job_id)
    votes = {m[i]: result_for(job_id, {world.others[0]: ETH}, tag=i + 1)[0] for i in range(3)}
    play_round(led, job_id, 0, votes, world.requester)  # a split: it escalates
    world.chain.advance_time(PERIOD + 1)  # and nobody draws the second committee
    led.finalize_round(world.requester, job_id, 0)
    job = led.job(job_id)
    assert job.refunded == 5 * ETH and job.payable_total == 0 and job.slashed == 0
    (ab,) = led.events("RoundAborted")
    assert ab.args["refund"] == 5 * ETH
    before = led.balance(world.requester)
    led.withdraw(world.requester)
    gas = led.last_gas * int(led.last_receipt["effectiveGasPrice"])  # type: ignore[index]
    assert led.balance(world.requester) - before == 5 * ETH - gas
    with pytest.raises(Reverted, match="jobs: nothing owed"):
        led.withdraw(world.requester)


def test_members_who_committed_and_went_silent_are_slashed(world: World) -> None:
    led = world.ledger
    job_id = shaped(world, rounds=1)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    commit_all(led, job_id, 0, {m[0]: good, m[1]: good, m[2]: good})
    with pytest.raises(Reverted, match="jobs: round not over"):
        led.finalize_round(world.others[1], job_id, 0)
    reveal_all(led, job_id, 0, {m[0]: good, m[1]: good})  # m[2] never reveals
    world.chain.advance_time(2 * PERIOD)
    led.finalize_round(world.others[1], job_id, 0)  # anyone may trigger
    slashed = led.events("MemberSlashed")
    assert [(e.args["member"], e.args["revealed"]) for e in slashed] == [(m[2], False)]
    job = led.job(job_id)
    assert job.state == JobState.DONE and job.payable_total == ETH


def test_drawn_members_who_never_accepted_lose_nothing(world: World) -> None:
    led = world.ledger
    job_id = shaped(world, rounds=1)
    m = led.committee(job_id)
    stakes = [led.node(v).stake for v in m]
    world.chain.advance_time(2 * PERIOD)
    led.finalize_round(world.others[0], job_id, 0)
    job = led.job(job_id)
    assert job.refunded == 10 * ETH and job.slashed == 0
    assert [led.node(v).stake for v in m] == stakes
    assert job.state == JobState.DONE


def test_late_finalize_is_tipped_to_anyone(world: World) -> None:
    led = world.ledger
    job_id = shaped(world, rounds=1)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    commit_all(led, job_id, 0, dict.fromkeys(m, good))
    reveal_all(led, job_id, 0, dict.fromkeys(m, good))
    rnd = led.round(job_id)
    world.chain.advance_time(rnd.reveal_deadline + led.jobs.functions.FINALIZE_GRACE().call())
    stranger = world.others[2]
    led.finalize_round(stranger, job_id, 0)
    tip = led.job(job_id).round_budget // 100
    assert led.owed(stranger) == tip and led.job(job_id).tipped == tip
    assert led.job(job_id).refunded == 10 * ETH - ETH - tip
    assert [led.node(v).locked for v in m] == [0, 0, 0]


def test_round_flow_reverts(world: World) -> None:
    led = world.ledger
    job_id = shaped(world)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    c = result_commitment(job_id, 0, m[0], good, SALT)
    with pytest.raises(Reverted, match="jobs: wrong round"):
        led.commit(m[0], job_id, 1, c)
    with pytest.raises(Reverted, match="jobs: bad index"):
        led.commit(m[0], job_id, 0, c, index=5)
    with pytest.raises(Reverted, match="jobs: job not open"):
        led.commit(m[0], 99, 0, c, index=0)
    led.commit(m[0], job_id, 0, c)
    with pytest.raises(Reverted, match="jobs: reveal not open"):
        led.reveal(m[0], job_id, 0, good, SALT)
    world.chain.advance_time(PERIOD)
    with pytest.raises(Reverted, match="jobs: commit closed"):
        led.commit(m[1], job_id, 0, c)
    with pytest.raises(Reverted, match="jobs: not committed"):
        led.reveal(m[1], job_id, 0, good, SALT)
    led.reveal(m[0], job_id, 0, good, SALT)
    with pytest.raises(Reverted, match="jobs: already revealed"):
        led.reveal(m[0], job_id, 0, good, SALT)
    with pytest.raises(Reverted, match="jobs: round not over"):
        led.finalize_round(m[0], job_id, 0)
    with pytest.raises(Reverted, match="jobs: wrong round"):
        led.finalize_round(m[0], job_id, 1)


def test_total_above_budget_cannot_be_revealed(world: World) -> None:
    led = world.ledger
    job_id = shaped(world)
    m = led.committee(job_id)
    tree = PayoutTree(job_id, {world.others[0]: 6 * ETH})
    greedy = RoundResult(b"\x01" * 32, tree.root, tree.total)  # budget is 5 ETH a round
    commit_all(led, job_id, 0, dict.fromkeys(m, greedy))
    with pytest.raises(Reverted, match="jobs: total above round budget"):
        led.reveal(m[0], job_id, 0, greedy, SALT)


def test_sweep_returns_unclaimed_after_claim_period(world: World) -> None:
    led = world.ledger
    job_id = shaped(world, rounds=1)
    payee = world.others[0]
    m = led.committee(job_id)
    r, tree = result_for(job_id, {payee: 2 * ETH})
    with pytest.raises(Reverted, match="jobs: claims closed"):
        led.claim(payee, job_id, payee, 2 * ETH, tree.proof(payee))
    with pytest.raises(Reverted, match="jobs: job not done"):
        led.sweep_job(payee, job_id)
    play_round(led, job_id, 0, dict.fromkeys(m, r), world.requester)
    with pytest.raises(Reverted, match="jobs: claim period not over"):
        led.sweep_job(payee, job_id)
    world.chain.advance_time(10 * PERIOD)
    led.sweep_job(payee, job_id)
    job = led.job(job_id)
    assert job.state == JobState.SWEPT and job.refunded == 10 * ETH
    assert led.escrow(job_id) == 0
    with pytest.raises(Reverted, match="jobs: claims closed"):
        led.claim(payee, job_id, payee, 2 * ETH, tree.proof(payee))


def test_claim_many_checks_lengths(world: World) -> None:
    led = world.ledger
    fn = led.jobs.functions.claim_many(1, [world.others[0]], [], [])
    with pytest.raises(Reverted, match="jobs: length mismatch"):
        led._send(world.requester, fn, 0, "claim_many")


def test_claim_jobs_pays_one_payee_across_jobs_in_one_transfer(world: World) -> None:
    led = world.ledger
    payee, other = world.others[2], world.workers[1]
    trees = []
    for tag in (1, 2):
        job_id = shaped(world, rounds=1)
        result, tree = result_for(job_id, {payee: tag * ETH, other: ETH}, tag=tag)
        play_round(led, job_id, 0, dict.fromkeys(led.committee(job_id), result), world.requester)
        trees.append((job_id, tree))
    before = led.balance(payee)
    with pytest.raises(Exception, match="jobs: invalid proof"):  # another payee's leaves
        led.jobs.functions.claim_jobs(
            other, [j for j, _ in trees], [3 * ETH, 3 * ETH], [t.proof(payee) for _, t in trees]
        ).call({"from": world.requester})
    led.claim_jobs(world.requester, payee, trees)  # any sender; the payee gets the money
    assert led.balance(payee) - before == 3 * ETH
    receipt = led.last_receipt
    assert receipt is not None
    assert len(led.events("Claimed", filters={"account": payee})) == 2  # one per leaf
    for job_id, tree in trees:
        assert led.jobs.functions.is_claimed(job_id, tree.index(payee)).call()
        assert led.job(job_id).claimed_total == tree.amount(payee)
    with pytest.raises(Reverted, match="jobs: nothing to claim"):  # each leaf once
        led.claim_jobs(world.requester, payee, trees[:1])
    with pytest.raises(Reverted, match="jobs: nothing to claim"):  # a repeat in one batch
        led.claim_jobs(world.requester, other, [trees[0], trees[0]])
    led.claim_jobs(world.requester, other, trees)
    assert sum(led.escrow(j) for j, _ in trees) == 0


def test_claim_book_tracks_claims_live_and_closes_at_sweep(world: World) -> None:
    """The claimed total lives in one packed word while claims are open: the job view and
    the escrow follow every claim, the sweep refunds exactly the unclaimed rest and keeps
    the claimed total in the job record, and nothing can be claimed after it."""
    led = world.ledger
    job_id = shaped(world, rounds=1)
    a, b = world.others[0], world.others[1]
    r, tree = result_for(job_id, {a: 2 * ETH, b: 1 * ETH})
    play_round(led, job_id, 0, dict.fromkeys(led.committee(job_id), r), world.requester)
    job = led.job(job_id)
    assert job.state == JobState.DONE and job.payable_total == 3 * ETH
    assert job.claimed_total == 0 and led.escrow(job_id) == 3 * ETH
    led.claim(world.requester, job_id, a, 2 * ETH, tree.proof(a))
    assert led.job(job_id).claimed_total == 2 * ETH and led.escrow(job_id) == ETH
    world.chain.advance_time(10 * PERIOD)
    refunded = led.job(job_id).refunded
    led.sweep_job(a, job_id)
    job = led.job(job_id)
    assert job.state == JobState.SWEPT and job.claimed_total == 2 * ETH
    assert job.refunded - refunded == ETH and led.escrow(job_id) == 0
    with pytest.raises(Reverted, match="jobs: claims closed"):
        led.claim(world.requester, job_id, b, ETH, tree.proof(b))
    with pytest.raises(Reverted, match="jobs: job not done"):  # a second sweep
        led.sweep_job(a, job_id)


def test_job_with_nothing_settled_pays_nobody(world: World) -> None:
    led = world.ledger
    job_id = new_job(world, rounds=1)
    payee = world.others[0]
    _, tree = result_for(job_id, {payee: ETH})
    world.chain.advance_time(PERIOD + 1)
    led.finalize_round(payee, job_id, 0)  # never drawn: aborted, the job is done
    assert led.job(job_id).state == JobState.DONE
    with pytest.raises(Reverted, match="jobs: nothing settled"):
        led.claim(payee, job_id, payee, ETH, tree.proof(payee))
    assert led.escrow(job_id) == 0


def test_claim_jobs_takes_at_most_sixteen_jobs(world: World) -> None:
    led = world.ledger
    payee = world.others[0]
    job_id = shaped(world, rounds=1)
    r, tree = result_for(job_id, {payee: ETH})
    play_round(led, job_id, 0, dict.fromkeys(led.committee(job_id), r), world.requester)
    fn = led.jobs.functions.claim_jobs(payee, [job_id] * 17, [ETH] * 17, [tree.proof(payee)] * 17)
    with pytest.raises(Exception):  # noqa: B017 - the ABI decoder's bound check, no reason
        fn.call({"from": world.requester})
    assert led.job(job_id).claimed_total == 0
