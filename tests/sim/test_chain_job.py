"""A simulated job settled on the embedded chain: the lying validator is slashed from
on-chain evidence, honest ones are not, attackers earn nothing, and money is conserved."""

from scenario_kit import scenario as parse_scenario

from deai.sim.runner import run_scenario

ETH = 10**18


def test_rounds_settle_on_chain_and_the_liar_is_slashed() -> None:
    m = run_scenario(
        parse_scenario(
            {
                "rounds": 3,
                "aggregator": "default",
                "algorithm": {"name": "fedavg", "epochs": 2, "batch_size": 16, "lr": 0.1},
                "ledger": {"budget_eth": 3.0, "stake_eth": 5.0, "committee": 3},
                "nodes": [
                    {"role": "provider", "count": 6},
                    {"role": "provider", "count": 2, "attack": "sign_flip"},
                    {"role": "validator", "count": 2},
                    {"role": "validator", "behaviour": "liar"},
                ],
            }
        )
    ).metrics
    led = m["ledger"]
    assert len(led["rounds"]) == 3
    for r in led["rounds"]:
        assert r["slashed"] == ["validator-2"]
        assert sorted(r["committee"]) == ["validator-0", "validator-1", "validator-2"]
    stakes = {v["node"]: (v["stake_before_wei"], v["stake_after_wei"]) for v in led["validators"]}
    assert stakes["validator-0"] == stakes["validator-1"] == (5 * ETH, 5 * ETH)
    assert stakes["validator-2"] == (5 * ETH, 2 * ETH)  # 1 ETH per round, by the contract
    assert led["slashed_wei"] == 3 * ETH
    # deposit = claimed + refunded (every wei settled by the majority was claimed)
    assert led["deposit_wei"] == led["claimed_wei"] + led["refunded_wei"]
    paid = {p["node"]: p["paid_wei"] for p in led["providers"]}
    assert sum(paid.values()) == led["claimed_wei"]
    attackers = set(m["attackers"])
    assert attackers == {"provider-006", "provider-007"}
    assert all(paid[a] == 0 for a in attackers)
    # rules 5-6 of deai.node.payouts: an honest provider with a net-negative contribution
    # over these 3 rounds is not paid (3 of 6 here), so at least half of them must be
    assert sum(paid[p] > 0 for p in paid if p not in attackers) >= 3
    assert led["gas_total"] > 0
