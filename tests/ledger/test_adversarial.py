"""Adversarial ledger tests: forged reveals and proofs, non-members, double actions, late
reveals, and a contract that re-enters withdrawals."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import (
    DELAY,
    ETH,
    PERIOD,
    SALT,
    World,
    commit_all,
    distinct,
    drawn_job,
    play_round,
    result_for,
)
from vyper.compiler import compile_code
from web3 import Web3
from web3.contract import Contract

from deai.ledger.errors import Reverted
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import Role, RoundResult, result_commitment


def new_job(world: World, rounds: int = 1) -> int:
    return drawn_job(world, lambda: _create(world, rounds), distinct(3))


def _create(world: World, rounds: int) -> int:
    return world.ledger.create_job(
        world.requester,
        budget=10 * ETH,
        spec_hash=b"\x33" * 32,
        rounds=rounds,
        committee_size=3,
        commit_period=PERIOD,
        reveal_period=PERIOD,
        claim_period=PERIOD,
    )


def deploy_attacker(world: World) -> Contract:
    out = compile_code(
        (Path(__file__).parent / "Attacker.vy").read_text(), output_formats=["abi", "bytecode"]
    )
    ctor = world.chain.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"]).constructor()
    receipt = world.ledger._send(world.others[2], ctor, 0, "deploy Attacker")
    return world.chain.w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])


def test_reveal_not_matching_commitment(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    other, _ = result_for(job_id, {world.others[0]: 2 * ETH}, tag=7)
    commit_all(led, job_id, 0, dict.fromkeys(m, good))
    with pytest.raises(Reverted, match="jobs: reveal does not match"):
        led.reveal(m[0], job_id, 0, other, SALT)  # a different result
    with pytest.raises(Reverted, match="jobs: reveal does not match"):
        led.reveal(m[0], job_id, 0, good, b"\x00" * 32)  # a different salt
    with pytest.raises(Reverted, match="jobs: not a member"):
        led.reveal(m[1], job_id, 0, good, SALT, index=0)  # m[0]'s slot, m[1]'s key


def test_copied_commitment_cannot_be_revealed_by_the_copier(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    honest = result_commitment(job_id, 0, m[0], good, SALT)
    led.commit(m[0], job_id, 0, honest)
    led.commit(m[1], job_id, 0, honest)  # lazy member copies the commitment
    led.commit(m[2], job_id, 0, result_commitment(job_id, 0, m[2], good, SALT))
    with pytest.raises(Reverted, match="jobs: reveal does not match"):
        led.reveal(m[1], job_id, 0, good, SALT)  # binding to the member defeats copying


def test_commit_by_non_member(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    outsider = world.others[0]
    good, _ = result_for(job_id, {outsider: ETH})
    for index in range(3):
        with pytest.raises(Reverted, match="jobs: not a member"):
            led.commit(
                outsider, job_id, 0, result_commitment(job_id, 0, outsider, good, SALT), index=index
            )


def test_double_commit(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    c = result_commitment(job_id, 0, m[0], good, SALT)
    led.commit(m[0], job_id, 0, c)
    with pytest.raises(Reverted, match="jobs: already committed"):
        led.commit(m[0], job_id, 0, c)


def test_reveal_after_deadline(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    good, _ = result_for(job_id, {world.others[0]: ETH})
    commit_all(led, job_id, 0, dict.fromkeys(m, good))
    world.chain.advance_time(2 * PERIOD)
    with pytest.raises(Reverted, match="jobs: reveal closed"):
        led.reveal(m[0], job_id, 0, good, SALT)


def test_forged_proof_and_second_claim(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    a, b, thief = world.others[0], world.others[1], world.others[2]
    good, tree = result_for(job_id, {a: ETH, b: 2 * ETH, world.workers[0]: ETH})
    play_round(led, job_id, 0, dict.fromkeys(m, good), world.requester)
    with pytest.raises(Reverted, match="jobs: invalid proof"):
        led.claim(thief, job_id, thief, 2 * ETH, tree.proof(b))  # b's proof, thief's leaf
    with pytest.raises(Reverted, match="jobs: invalid proof"):
        led.claim(a, job_id, a, 2 * ETH, tree.proof(a))  # inflated amount
    forged = PayoutTree(job_id, {thief: 5 * ETH})
    with pytest.raises(Reverted, match="jobs: invalid proof"):
        led.claim(thief, job_id, thief, 5 * ETH, forged.proof(thief))  # own tree
    with pytest.raises(Reverted, match="jobs: invalid proof"):
        led.claim(a, job_id, a, ETH, [])  # a leaf is never the root of a 3-leaf tree
    led.claim(a, job_id, a, ETH, tree.proof(a))
    with pytest.raises(Reverted, match="jobs: nothing to claim"):
        led.claim(a, job_id, a, ETH, tree.proof(a))
    with pytest.raises(Reverted, match="jobs: nothing to claim"):
        led.claim_many(b, job_id, tree, [b, b])  # duplicate inside one batch
    assert led.claimed(job_id, b) == 0


def test_reentrancy_on_stake_withdrawal(world: World) -> None:
    led, reg = world.ledger, world.ledger.registry
    attacker = deploy_attacker(world)
    who, addr = world.others[2], attacker.address
    join = reg.encode_abi("join", args=["evil", int(Role.VALIDATOR)])
    led._send(who, attacker.functions.forward(reg.address, join), 2 * ETH, "attack join")
    unstake = reg.encode_abi("request_unstake", args=[2 * ETH])
    led._send(who, attacker.functions.forward(reg.address, unstake), 0, "attack unstake")
    world.chain.advance_time(DELAY + 1)
    withdraw = reg.encode_abi("withdraw", args=[])
    led._send(who, attacker.functions.arm(reg.address, withdraw), 0, "arm")
    held = led.balance(reg.address)
    led._send(who, attacker.functions.forward(reg.address, withdraw), 0, "attack withdraw")
    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.reentered().call() is False
    assert led.balance(addr) == 2 * ETH  # its stake, once
    assert led.balance(reg.address) == held - 2 * ETH
    assert led.node(addr).pending == 0


def test_reentrancy_on_payout_withdrawal(world: World) -> None:
    led, jobs = world.ledger, world.ledger.jobs
    attacker = deploy_attacker(world)
    who, addr = world.others[2], Web3.to_checksum_address(attacker.address)
    withdraw = jobs.encode_abi("withdraw", args=[])
    led._send(who, attacker.functions.arm(jobs.address, withdraw), 0, "arm")
    job_id = new_job(world)
    m = led.committee(job_id)
    good, tree = result_for(job_id, {addr: 2 * ETH, world.others[0]: ETH})
    play_round(led, job_id, 0, dict.fromkeys(m, good), world.requester)
    # the push to the attacker runs out of its small stipend, so it becomes a pull balance
    led.claim(who, job_id, addr, 2 * ETH, tree.proof(addr))
    assert led.owed(addr) == 2 * ETH and led.balance(addr) == 0
    assert led.events("Credited", filters={"account": addr})[0].args["amount"] == 2 * ETH
    held = led.balance(jobs.address)
    led._send(who, attacker.functions.forward(jobs.address, withdraw), 0, "attack withdraw")
    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.reentered().call() is False
    assert led.balance(addr) == 2 * ETH
    assert led.balance(jobs.address) == held - 2 * ETH
    assert led.owed(addr) == 0


def test_result_hash_is_what_the_contract_tallies(world: World) -> None:
    led = world.ledger
    job_id = new_job(world)
    m = led.committee(job_id)
    r = RoundResult(b"\x01" * 32, b"\x02" * 32, 0)  # zero payout round is allowed
    play_round(led, job_id, 0, dict.fromkeys(m, r), world.requester)
    assert [e.args["result_hash"] for e in led.events("Revealed")] == [r.hash] * 3
