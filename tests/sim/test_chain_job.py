"""A simulated job settled on the embedded chain: the lying validator is slashed from
on-chain evidence, honest ones are not, attackers earn nothing, and money is conserved."""

from scenario_kit import scenario as parse_scenario

from deai.sim.runner import run_scenario

ETH = 10**18
SEATS = 5  # first committee; a split round escalates to 16 more seats
LIAR = "validator-4"  # after four honest validators, all five at equal stake


def test_rounds_settle_on_chain_and_the_liar_is_slashed() -> None:
    m = run_scenario(
        parse_scenario(
            {
                "rounds": 3,
                "aggregator": "default",
                "algorithm": {"name": "fedavg", "epochs": 2, "batch_size": 16, "lr": 0.1},
                "ledger": {"budget_eth": 3.0, "stake_eth": 5.0, "committee": SEATS},
                "nodes": [
                    {"role": "provider", "count": 6},
                    {"role": "provider", "count": 2, "attack": "sign_flip"},
                    {"role": "validator", "count": 4},
                    {"role": "validator", "behaviour": "liar"},
                ],
            }
        )
    ).metrics
    led = m["ledger"]
    assert len(led["rounds"]) == 3
    lost = dict.fromkeys([f"validator-{i}" for i in range(5)], 0)
    for r in led["rounds"]:
        # seats are drawn with replacement in proportion to stake (5 seats, 5 equal
        # stakes; the committee and seats come from the RoundDrawn events). A round the
        # liar splits escalates to 16 fresh seats and is decided over all of them: the
        # losing side is slashed only if the winner holds >= 3/4 of both draws' seats,
        # each first seat for 1 ETH, each escalated seat for ceil(5 ETH / 16)
        seats, second = r["seats"], r["escalated_seats"] or {}
        assert sorted(seats) == sorted(r["committee"]) and sum(seats.values()) == SEATS, r
        split = 0 < seats.get(LIAR, 0) < SEATS
        assert bool(second) == split, r  # a split, and only a split, escalates
        per = -(-SEATS * ETH // sum(second.values())) if second else 0
        total = SEATS + sum(second.values())
        liar = seats.get(LIAR, 0) + second.get(LIAR, 0)
        lose: set[str] = set()
        if split and liar * 4 >= total * 3:
            lose = {v for v in [*seats, *second] if v != LIAR}
        elif split and (total - liar) * 4 >= total * 3:
            lose = {LIAR}
        expect = [v for draw in (seats, second) for v in draw if v in lose]
        assert sorted(r["slashed"]) == sorted(expect), (r, led["errors"])
        assert r["settled"], r
        for v in lose:
            lost[v] += seats.get(v, 0) * ETH + second.get(v, 0) * per
    # the liar sat in a first committee and split it: the members followed the escalation
    assert any(r["escalated_seats"] for r in led["rounds"])
    stakes = {v["node"]: (v["stake_before_wei"], v["stake_after_wei"]) for v in led["validators"]}
    for v, wei in lost.items():
        assert stakes[v] == (5 * ETH, 5 * ETH - wei), (v, stakes, led["rounds"])
    assert led["slashed_wei"] == sum(lost.values())
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
