"""Registry: joining, staking, unstaking with delay, slashing hook, stake-weighted draw."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from ledger_helpers import DELAY, ETH, World

from deai.errors import ChainError
from deai.ledger.committee import draw_committee
from deai.ledger.errors import Reverted
from deai.ledger.types import BURN_ADDRESS, Role


def test_join_records_node_and_validator_list(world: World) -> None:
    led, new = world.ledger, world.others[0]
    led.register(new, 5 * ETH, "http://new:8000", Role.VALIDATOR | Role.PROVIDER)
    node = led.node(new)
    assert (node.stake, node.roles, node.endpoint) == (
        5 * ETH,
        Role.VALIDATOR | Role.PROVIDER,
        "http://new:8000",
    )
    assert led.validators() == [*world.validators, new]
    (ev,) = led.events("Joined", filters={"node": new})
    assert ev.args["stake"] == 5 * ETH


@pytest.mark.parametrize(
    ("stake", "roles", "reason"),
    [
        (ETH - 1, 8, "registry: stake below minimum"),
        (ETH, 0, "registry: bad roles"),
        (ETH, 16, "registry: bad roles"),
    ],
)
def test_join_reverts(world: World, stake: int, roles: int, reason: str) -> None:
    with pytest.raises(Reverted) as info:
        world.ledger.register(world.others[0], stake, "x", Role(roles))
    assert info.value.reason == reason
    assert info.value.contract == "registry"
    assert isinstance(info.value, ChainError)


def test_double_join_reverts(world: World) -> None:
    with pytest.raises(Reverted, match="registry: already joined"):
        world.ledger.register(world.validators[0], ETH, "x", Role.VALIDATOR)


def test_add_stake_and_update(world: World) -> None:
    led, v = world.ledger, world.validators[0]
    led.add_stake(v, ETH)
    assert led.node(v).stake == 3 * ETH
    led.update_node(v, "http://moved", Role.PROVIDER)
    assert led.node(v).endpoint == "http://moved"
    assert v not in led.validators()  # dropped the validator role: its tree slot is freed
    slots = led.registry.functions.slot_count().call()
    led.update_node(v, "http://moved", Role.VALIDATOR)
    assert v in led.validators() and led.registry.functions.slot_count().call() == slots
    with pytest.raises(Reverted, match="registry: zero amount"):
        led.add_stake(v, 0)
    with pytest.raises(Reverted, match="registry: not joined"):
        led.add_stake(world.others[0], ETH)
    with pytest.raises(Reverted, match="registry: not joined"):
        led.update_node(world.others[0], "x", Role.VALIDATOR)
    with pytest.raises(Reverted, match="registry: bad roles"):
        led.update_node(v, "x", Role(0))


def test_unstake_waits_for_delay_then_withdraws(world: World) -> None:
    led, v = world.ledger, world.validators[2]  # 4 ETH
    led.unstake(v, ETH)
    node = led.node(v)
    assert (node.stake, node.pending) == (3 * ETH, ETH)
    with pytest.raises(Reverted, match="registry: still locked"):
        led.withdraw_stake(v)
    world.chain.advance_time(DELAY + 1)
    before = led.balance(v)
    led.withdraw_stake(v)
    gas_price = int(led.last_receipt["effectiveGasPrice"])  # type: ignore[index]
    assert led.balance(v) - before == ETH - led.last_gas * gas_price
    assert led.node(v).pending == 0
    with pytest.raises(Reverted, match="registry: nothing pending"):
        led.withdraw_stake(v)


def test_unstake_reverts_and_full_exit(world: World) -> None:
    led, v = world.ledger, world.validators[0]  # 2 ETH
    with pytest.raises(Reverted, match="registry: zero amount"):
        led.unstake(v, 0)
    with pytest.raises(Reverted, match="registry: amount above stake"):
        led.unstake(v, 3 * ETH)
    with pytest.raises(Reverted, match="registry: rest below minimum"):
        led.unstake(v, ETH + 1)
    led.unstake(v, 2 * ETH)  # everything: leaves the registry and the validator list
    assert led.node(v).roles == Role(0)
    assert v not in led.validators()
    led.register(v, ETH, "back", Role.VALIDATOR)  # may join again while pending
    assert led.node(v).pending == 2 * ETH


def test_slash_only_by_jobs_or_tasks(world: World) -> None:
    fn = world.ledger.registry.functions.slash(world.validators[0], ETH)
    with pytest.raises(Reverted, match="registry: not a slasher"):
        world.ledger._send(world.requester, fn, 0, "slash")


def test_sweep_with_nothing_slashed_reverts(world: World) -> None:
    with pytest.raises(Reverted, match="registry: nothing to sweep"):
        world.ledger.sweep_slashed(world.requester)
    reg = world.ledger.registry.functions
    assert reg.SLASH_RECIPIENT().call() == BURN_ADDRESS


def test_draw_matches_python_and_is_stake_weighted(world: World) -> None:
    led = world.ledger
    slots = led.validator_slots()
    for i in range(6):
        seed = keccak(i.to_bytes(32, "big"))
        for size in (1, 2, 3, 5, 16):
            assert led.draw(seed, size) == draw_committee(seed, slots, size)
    assert len(led.draw(seed, 16)) == 16  # with replacement: never capped by head-count
    # frequency over many seeds (pure Python, proven equal above): seats follow stake
    seats = [s for i in range(40) for s in draw_committee(keccak(bytes([i])), slots, 10)]
    counts = [seats.count(v) for v in world.validators]  # stakes 2, 3, 4
    assert counts[0] < counts[2]
    assert abs(counts[2] / len(seats) - 4 / 9) < 0.08
    with pytest.raises(Reverted, match="registry: committee too large"):
        led.draw(seed, 17)


def test_locked_stake_cannot_be_unstaked_and_only_jobs_locks(world: World) -> None:
    led, v = world.ledger, world.validators[0]
    for fn in (
        led.registry.functions.lock(v, ETH),
        led.registry.functions.release(v, ETH, ETH),
    ):
        with pytest.raises(Reverted, match="registry: not jobs"):
            led._send(world.requester, fn, 0, "lock")


def test_tree_slots_are_reused_and_weights_track_stake(world: World) -> None:
    led = world.ledger
    reg = led.registry.functions
    a, b = world.others[0], world.others[1]
    led.register(a, 2 * ETH, "a", Role.VALIDATOR)
    total = reg.total_weight().call()
    assert total == 2 * ETH + 9 * ETH
    led.unstake(a, 2 * ETH)  # leaves: weight and slot freed
    assert reg.total_weight().call() == 9 * ETH and a not in led.validators()
    slots = reg.slot_count().call()
    led.register(b, 3 * ETH, "b", Role.VALIDATOR | Role.WORKER)  # takes the freed slot
    assert reg.slot_count().call() == slots and led.node(b).slot > 0
    led.register(world.others[2], ETH, "w", Role.WORKER)  # not a validator: no slot
    assert led.node(world.others[2]).slot == 0
    assert sum(w for _, w in led.validator_slots()) == reg.total_weight().call() == 12 * ETH


def test_registry_refuses_unknown_blueprints(world: World) -> None:
    from web3 import Web3

    from deai.ledger.compiler import compile_contract

    w3 = world.chain.w3
    reg = compile_contract("Registry")
    fake = world.ledger.deployment.jobs  # a deployed Jobs contract, not its blueprint
    ctor = w3.eth.contract(abi=reg.abi, bytecode=reg.bytecode).constructor(
        ETH, DELAY, Web3.to_checksum_address(BURN_ADDRESS), fake, fake, ETH, ETH
    )
    with pytest.raises(Reverted, match="registry: unknown jobs blueprint"):
        world.ledger._send(world.requester, ctor, 0, "deploy Registry")


def test_stake_and_roles_share_a_word_and_never_leak_into_each_other(world: World) -> None:
    """Stake (low 128 bits) and roles (high bits) live in one storage word: every write of
    one leaves the other exactly as it was, and `nodes` and `eligible` read both back."""
    led, reg = world.ledger, world.ledger.registry.functions
    node = world.others[0]
    roles = Role.VALIDATOR | Role.WORKER
    led.register(node, 3 * ETH, "n", roles)
    assert (led.node(node).stake, led.node(node).roles) == (3 * ETH, roles)
    led.add_stake(node, 2 * ETH + 7)  # odd wei: a mask error would show in the low bits
    assert (led.node(node).stake, led.node(node).roles) == (5 * ETH + 7, roles)
    led.update_node(node, "n2", Role.PROVIDER)  # roles only
    assert (led.node(node).stake, led.node(node).roles) == (5 * ETH + 7, Role.PROVIDER)
    assert reg.eligible(node, int(Role.PROVIDER)).call()
    assert not reg.eligible(node, int(Role.VALIDATOR)).call()
    led.update_node(node, "n2", roles)
    assert reg.weight(node).call() == 5 * ETH + 7  # back in the tree with its full stake
    led.unstake(node, 4 * ETH)  # stake only
    n = led.node(node)
    assert (n.stake, n.pending, n.roles) == (ETH + 7, 4 * ETH, roles)
    assert reg.weight(node).call() == ETH + 7
    led.unstake(node, ETH + 7)  # everything: roles cleared, stake 0
    assert (led.node(node).stake, led.node(node).roles) == (0, Role(0))
    assert not reg.eligible(node, int(Role.WORKER)).call()


def test_a_provider_join_leaves_the_validator_tree_alone(world: World) -> None:
    """A non-validator holds no tree weight: its join writes no tree word and does not
    re-arm any draw (last_change_block stays)."""
    led, reg = world.ledger, world.ledger.registry.functions
    before = (reg.total_weight().call(), reg.slot_count().call(), reg.last_change_block().call())
    led.register(world.others[1], ETH, "http://provider:8000", Role.PROVIDER)
    assert (
        reg.total_weight().call(),
        reg.slot_count().call(),
        reg.last_change_block().call(),
    ) == before
    assert led.node(world.others[1]).slot == 0 and reg.weight(world.others[1]).call() == 0
