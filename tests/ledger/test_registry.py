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
    assert v not in led.validators()  # dropped the validator role
    led.update_node(v, "http://moved", Role.VALIDATOR)
    assert led.validators()[-1] == v
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
    cands = [(v, led.node(v).stake) for v in led.validators()]
    for i in range(6):
        seed = keccak(i.to_bytes(32, "big"))
        for size in (1, 2, 3, 5):
            assert led.draw(seed, size) == draw_committee(seed, cands, size, ETH)
    assert sorted(led.draw(seed, 5)) == sorted(world.validators)  # capped at eligible
    # frequency over many seeds (pure Python, proven equal above): heavier stake drawn more
    firsts = [
        draw_committee(keccak(bytes([i, j])), cands, 1, ETH)[0]
        for i in range(40)
        for j in range(10)
    ]
    counts = [firsts.count(v) for v in world.validators]  # stakes 2, 3, 4
    assert counts[0] < counts[2]
    assert abs(counts[2] / len(firsts) - 4 / 9) < 0.08
    with pytest.raises(Reverted, match="registry: committee too large"):
        led.draw(seed, 17)
