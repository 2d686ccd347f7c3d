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
    lost = dict.fromkeys(["validator-0", "validator-1", "validator-2"], 0)
    for r in led["rounds"]:
        # seats are drawn with replacement in proportion to stake (3 seats, equal stakes):
        # the liar wins a round only with a seat majority, P = 7/27; then the honest
        # members it outvoted are slashed, otherwise the liar is
        seats = r["seats"]
        if not r["committee"]:  # the reporting member never saw this round drawn
            continue  # (stakes below are still checked against every slash)
        assert sorted(seats) == sorted(r["committee"]) and sum(seats.values()) == 3
        liar_wins = seats.get("validator-2", 0) * 2 > 3
        expect = [v for v in seats if (v == "validator-2") != liar_wins]
        assert sorted(r["slashed"]) == sorted(expect), (r, led["errors"])
        for v in expect:
            lost[v] += seats[v] * ETH  # 1 ETH per seat, by the contract
    stakes = {v["node"]: (v["stake_before_wei"], v["stake_after_wei"]) for v in led["validators"]}
    for v, wei in lost.items():
        assert stakes[v][0] == 5 * ETH and stakes[v][1] <= 5 * ETH - wei
    assert led["slashed_wei"] == sum(s[0] - s[1] for s in stakes.values())
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
