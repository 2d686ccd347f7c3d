"""The ledger against adversaries (issue #13), on the real contracts on the embedded EVM.

- ``honest_stake_lost_wei``: honest validator stake lost over every adversarial scenario
  played end to end: a griefing requester (too-short windows, a 4-round job nobody
  serves), 13 Sybil identities at 1 ETH against 4 honest at 10 ETH voting a root that
  pays themselves in JOBS committees of 16, the escaper, and a liar with 1/3 of the
  stake voting a root paying itself in OUT_ROUNDS rounds of committees of 3, 5 and 7
  seats (``outvoted``: a split round escalates to 16 fresh seats and honest members it
  outvotes are slashed only when it holds >= 3/4 of both committees' seats; the old
  rule, every outvoted dissenter of the first committee slashed, counted on the same
  draws beside it, with the liar's own losses under both rules; the binomial model of
  both rules beside the measurement).
- ``split_majority_ratio``: P(attacker seat majority) with the attacker's stake split into
  1-ETH identities (joined interleaved with the honest) over the same with one identity,
  worst over attacker shares 10-40 %, majorities pooled over committees of 3, 5, 9 and 15
  seats. Each layout is deployed and its slots read from the Registry; the seats of
  SEEDS seeds are drawn by a mirror of ``Registry.draw`` that is checked against the
  contract's own ``draw`` on CHECK_SEEDS seeds per layout in this run. Model beside it:
  P = binomial tail, the same for both layouts (the seat law does not depend on identities).
- ``grind_majority_ratio``: attacker seat-majority frequency over GRIND_ROUNDS rounds where
  the attacker's FinalizeGrinder contract tries, before every honest finalize, to finalize
  only into a favourable committee (and its JobGrinder bumps job ids every round), over
  the same rounds without them (one snapshot replayed with the same seeded prevrandao,
  so the replays differ only where a grinder changed something); plus how often a
  grinder ever saw a committee.
- ``escape_success``: share of members that accepted a duty, lied, then tried to unstake
  everything, that kept their stake.
- ``draw_gas_at_1000_validators``: gas of ``Registry.draw`` for 5 and 16 seats among
  1,000 validators (eth_estimateGas, minus the 21,000 base), and of ``draw_round``.

Run: ``python benchmarks/ledger_adversarial.py`` (15-30 minutes on a shared machine);
writes benchmarks/results/ledger_adversarial.json and the tables in docs/ledger.md.
``--only part,part`` reruns those parts (PARTS) and keeps the others from the previous
JSON, listed in its ``parts_from_previous_run``; ``--docs`` rewrites the tables only.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import platform
import random
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak
from vyper.compiler import compile_code

from deai.ledger.chain import EmbeddedChain
from deai.ledger.client import Ledger
from deai.ledger.committee import draw_committee
from deai.ledger.errors import Reverted
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import LedgerConfig, Role, RoundResult, result_commitment

ETH = 10**18
CONFIG = LedgerConfig(min_stake=ETH // 4, withdrawal_delay=3_000, job_slash=ETH // 4)
PERIOD = 300
SEEDS = {10: 240_000, 20: 60_000, 30: 30_000, 40: 20_000}  # more where majorities are rare
CHECK_SEEDS = 20
SHARES = (10, 20, 30, 40)  # attacker % of 100 ETH
SIZES = (3, 5, 9, 15)
JOBS = 20
GRIND_ROUNDS = 300
GRIND_SEED = 13
OUT_SIZES = (3, 5, 7)
OUT_ROUNDS = 60  # per committee size
GRIND_SHARE = 45  # % of stake the grinder holds (seat majority of 3 is common: ~42 %)
SALT = b"\x31" * 32
OUT = Path(__file__).parent / "results" / "ledger_adversarial.json"
DOC = Path(__file__).parents[1] / "docs" / "ledger.md"
TESTS = Path(__file__).parents[1] / "tests" / "ledger"


def keys(tag: bytes, n: int) -> list[str]:
    return ["0x" + keccak(tag + i.to_bytes(2, "big")).hex() for i in range(n)]


def arena(n_keys: int, seeded: bool = True) -> tuple[Ledger, list[str]]:
    ks = keys(b"adv", n_keys)
    addrs = [Account.from_key(k).address for k in ks]
    # a seeded chain: block hashes, hence round seeds and committees, repeat run to run
    # (the grinding replays seed their own blocks: seeded_prevrandao)
    chain = EmbeddedChain(dict.fromkeys(addrs, 200 * ETH), seed=n_keys if seeded else None)
    led = Ledger.deploy(chain, CONFIG)
    for k in ks:
        led.add_key(k)
    return led, addrs


def new_job(led: Ledger, requester: str, size: int, rounds: int = 1) -> int:
    return led.create_job(requester, budget=ETH, spec_hash=b"\x05" * 32, rounds=rounds,
                          committee_size=size, commit_period=PERIOD, reveal_period=PERIOD,
                          claim_period=PERIOD)  # fmt: skip


def play(led: Ledger, job_id: int, r: int, votes: dict[str, RoundResult]) -> None:
    accepted = []
    for m, res in votes.items():
        try:  # a member without enough free stake for its seats cannot accept
            led.commit(m, job_id, r, result_commitment(job_id, r, m, res, SALT))
            accepted.append(m)
        except Reverted:
            pass
    if len(accepted) < len(votes):  # reveals open at the commit deadline, not before
        led.chain.advance_time(PERIOD)
    for m in accepted:
        led.reveal(m, job_id, r, votes[m], SALT)
    if len(accepted) < len(votes):  # finalize waits for the reveal window to close
        led.chain.advance_time(PERIOD)


def drawn_seats(led: Ledger, job_id: int, by: str) -> dict[str, int]:
    led.ensure_drawn(by, job_id)
    members, counts = led.committee(job_id), led.committee_seats(job_id)
    return dict(zip(members, counts, strict=True))


def play_round(
    led: Ledger, job_id: int, r: int, vote_of: Any, by: str
) -> tuple[dict[str, int], dict[str, int] | None]:
    """Play round ``r`` as the real protocol runs it: draw, every member votes
    ``vote_of(member)``, finalize; a split round escalates, and its second committee is
    drawn and played the same way. Returns the seats of the first committee and of the
    second (None when the round did not escalate)."""
    first = drawn_seats(led, job_id, by)
    play(led, job_id, r, {m: vote_of(m) for m in first})
    led.finalize_round(by, job_id, r)
    view = led.round(job_id)
    if led.job(job_id).state.name != "OPEN" or view.index != r or view.level == 0:
        return first, None
    second = drawn_seats(led, job_id, by)
    play(led, job_id, r, {m: vote_of(m) for m in second})
    led.finalize_round(by, job_id, r)
    return first, second


def escalated_seat(first_seats: int, seats: int) -> int:
    """Jobs._per_seat: the first committee's penalty spread over the second's seats."""
    return -(-CONFIG.job_slash * first_seats // seats)


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p, z = k / n, 1.96
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(c - h, 0.0), min(c + h, 1.0))


def paired_ratio_ci(y: list[int], x: list[int]) -> tuple[float, float, float]:
    """mean(y) / mean(x) over the same seeds, with a 95 % interval (delta method with
    the covariance of the pairs: majorities of one seed's committees are correlated)."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    vx = sum((a - mx) ** 2 for a in x) / (n - 1) / n
    vy = sum((b - my) ** 2 for b in y) / (n - 1) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / (n - 1) / n
    r = my / mx
    se = math.sqrt(max(vy / my**2 + vx / mx**2 - 2 * cov / (mx * my), 0.0))
    return r, r * math.exp(-1.96 * se), r * math.exp(1.96 * se)


def ratio_ci(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float, float]:
    """Ratio of two frequencies with a 95 % interval (log-ratio delta method)."""
    r = (k1 / n1) / (k0 / n0)
    se = math.sqrt(max(1 / k1 - 1 / n1 + 1 / k0 - 1 / n0, 0.0))
    return r, r * math.exp(-1.96 * se), r * math.exp(1.96 * se)


# ------------------------------------------------------------------ honest stake lost
def scenario_griefing_and_headcount(out: dict[str, object]) -> int:
    led, addrs = arena(20)
    requester, honest, sybils = addrs[0], addrs[1:5], addrs[5:18]
    for a in honest:
        led.register(a, 10 * ETH, "honest", Role.VALIDATOR)
    for a in sybils:
        led.register(a, ETH, "sybil", Role.VALIDATOR)
    before = {a: led.node(a).stake for a in honest}
    try:
        led.create_job(requester, budget=4, spec_hash=b"\0" * 32, rounds=4, committee_size=3,
                       commit_period=1, reveal_period=1, claim_period=PERIOD)  # fmt: skip
        out["griefing_short_windows"] = "accepted"
    except Reverted as e:
        out["griefing_short_windows"] = e.reason
    job_id = new_job(led, requester, 16, rounds=4)  # nobody serves it
    for r in range(4):
        led.ensure_drawn(requester, job_id)
        led.chain.advance_time(2 * PERIOD)
        led.finalize_round(requester, job_id, r)
    grief_lost = sum(before[a] - led.node(a).stake for a in honest)
    sybil_set, wins, seats, escalated = set(sybils), 0, 0, 0
    for _ in range(JOBS):
        job_id = new_job(led, requester, 16)
        good = PayoutTree(job_id, {addrs[19]: ETH})
        steal = PayoutTree(job_id, {sybils[0]: ETH})

        def vote(m: str, good: PayoutTree = good, steal: PayoutTree = steal) -> RoundResult:
            return RoundResult(b"\x0b" * 32, (steal if m in sybil_set else good).root, ETH)

        first, second = play_round(led, job_id, 0, vote, requester)
        seats += sum(c for m, c in first.items() if m in sybil_set)
        escalated += second is not None
        wins += led.job(job_id).root == steal.root
    head_lost = sum(before[a] - led.node(a).stake for a in honest) - grief_lost
    share = len(sybils) / (len(sybils) + 40)
    out["headcount"] = {
        "sybil_identities": len(sybils),
        "sybil_stake_share": round(share, 4),
        "jobs": JOBS,
        "committee_seats": 16,
        "sybil_seat_share": round(seats / (16 * JOBS), 4),
        "sybil_roots_settled": wins,
        "rounds_escalated": escalated,
        "model_p_sybil_majority": round(binom_tail(16, share), 5),
        "honest_stake_lost_wei": head_lost,
    }
    out["griefing_honest_stake_lost_wei"] = grief_lost
    return grief_lost + head_lost


def binom_tail(n: int, p: float) -> float:
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))


def scenario_escape(out: dict[str, object]) -> tuple[int, float]:
    led, addrs = arena(8)
    requester, vals = addrs[0], addrs[1:8]
    for a in vals:
        led.register(a, 2 * ETH, "v", Role.VALIDATOR)
    tries, escaped = 0, 0
    for _ in range(5):
        job_id = new_job(led, requester, 3)
        led.ensure_drawn(requester, job_id)
        member = led.committee(job_id)[0]
        res = RoundResult(b"\x0e" * 32, PayoutTree(job_id, {member: ETH}).root, ETH)
        led.commit(member, job_id, 0, result_commitment(job_id, 0, member, res, SALT))
        stake = led.node(member).stake
        with contextlib.suppress(Reverted):
            led.unstake(member, stake)
        led.chain.advance_time(CONFIG.withdrawal_delay + 1)
        with contextlib.suppress(Reverted):
            led.withdraw_stake(member)
        led.finalize_round(requester, job_id, 0)
        tries += 1
        node = led.node(member)
        escaped += node.stake + node.pending >= stake  # kept everything
    out["escape"] = {"attempts": tries, "kept_stake": escaped}
    return 0, escaped / tries


# ----------------------------------------------------------- honest members outvoted
ESCALATED = 16  # Jobs.ESCALATED_SEATS (the arena's stake backs far more seats)


def pmf(n: int, p: float, x: int) -> float:
    return math.comb(n, x) * p**x * (1 - p) ** (n - x)


def outvoted_model(n: int, p: float, escalation: bool) -> tuple[float, float]:
    """(P(an honest member is slashed in a round), E[honest wei slashed per round]) for a
    liar holding X0 ~ Bin(n, p) of the first committee's seats, every member revealing.
    Old rule: the liar wins with X0 > n / 2 and every outvoted honest seat is slashed.
    Escalation: a split round (0 < X0 < n) is redrawn with m = 16 more seats,
    X1 ~ Bin(m, p); honest members are slashed only if X0 + X1 >= 3/4 (n + m), each
    first-committee seat for SLASH and each second-committee seat for
    ceil(SLASH * n / m)."""
    prob, wei = 0.0, 0.0
    slash, m = CONFIG.job_slash, ESCALATED
    for x0 in range(1, n):  # x0 == 0 or n: unanimous, nobody outvoted
        w0 = pmf(n, p, x0)
        if not escalation:
            if x0 * 2 > n:
                prob += w0
                wei += w0 * (n - x0) * slash
            continue
        for x1 in range(m + 1):
            if (x0 + x1) * 4 >= (n + m) * 3:
                w = w0 * pmf(m, p, x1)
                prob += w
                wei += w * ((n - x0) * slash + (m - x1) * escalated_seat(n, m))
    return prob, wei


def outvoted_expect(
    first: dict[str, int], second: dict[str, int] | None, liar: str
) -> tuple[int, int]:
    """(honest wei, liar wei) the contract must slash for these draws, every member
    revealing its vote: a split round is decided over both committees' seats, and the
    loser is slashed only when the winner holds >= 3/4 of them."""
    if second is None:
        return 0, 0  # unanimous: settled, nobody dissented
    n, m = sum(first.values()), sum(second.values())
    x0, x1 = first.get(liar, 0), second.get(liar, 0)
    per = escalated_seat(n, m)
    slash = CONFIG.job_slash
    x, total = x0 + x1, n + m
    if x * 4 >= total * 3:
        return (n - x0) * slash + (m - x1) * per, 0
    if (total - x) * 4 >= total * 3:
        return 0, x0 * slash + x1 * per
    return 0, 0


def scenario_outvoted(out: dict[str, object]) -> int:
    """A liar with 1/3 of the stake votes a root paying itself in every round it sits
    in; four honest validators hold the rest. OUT_ROUNDS rounds per committee size on
    the contract (split rounds escalate); the old rule (every outvoted dissenter of the
    first committee slashed) is counted on the same first draws."""
    led, addrs = arena(6)
    requester, liar, honest = addrs[0], addrs[1], addrs[2:6]
    led.register(liar, 20 * ETH, "liar", Role.VALIDATOR)
    for h in honest:
        led.register(h, 10 * ETH, "honest", Role.VALIDATOR)
    rows = []
    lost_after = 0
    for size in OUT_SIZES:
        job_id = new_job(led, requester, size, rounds=OUT_ROUNDS)
        before_events, before_wei, after_events, after_wei, liar_wins = 0, 0, 0, 0, 0
        liar_before, liar_after, escalated = 0, 0, 0
        for r in range(OUT_ROUNDS):
            pay = led.job(job_id).round_budget
            good = PayoutTree(job_id, {addrs[0]: pay * (r + 1)})
            steal = PayoutTree(job_id, {liar: pay * (r + 1)})

            def vote(
                m: str, good: PayoutTree = good, steal: PayoutTree = steal, pay: int = pay
            ) -> RoundResult:
                return RoundResult(b"\x0c" * 32, (steal if m == liar else good).root, pay)

            stake0 = {h: led.node(h).stake for h in [liar, *honest]}
            first, second = play_round(led, job_id, r, vote, requester)
            escalated += second is not None
            x = first.get(liar, 0)
            lost = sum(stake0[h] - led.node(h).stake for h in honest)
            liar_lost = stake0[liar] - led.node(liar).stake
            want_honest, want_liar = outvoted_expect(first, second, liar)
            assert (lost, liar_lost) == (want_honest, want_liar), (size, r, first, second)
            liar_wins += led.job(job_id).root == steal.root
            old = (size - x) * CONFIG.job_slash if size > x and x * 2 > size else 0
            liar_old = x * CONFIG.job_slash if x > 0 and x * 2 < size else 0
            liar_before += liar_old
            liar_after += liar_lost
            before_events += old > 0
            before_wei += old
            after_events += lost > 0
            after_wei += lost
            for a, stake in ((liar, 20 * ETH), *((h, 10 * ETH) for h in honest)):
                if led.node(a).stake < stake:  # keep the 1/3 share (the draw re-arms)
                    led.add_stake(a, stake - led.node(a).stake)
        m_before, w_before = outvoted_model(size, 1 / 3, escalation=False)
        m_after, w_after = outvoted_model(size, 1 / 3, escalation=True)
        rows.append(
            {
                "seats": size,
                "rounds": OUT_ROUNDS,
                "rounds_escalated": escalated,
                "liar_result_won": liar_wins,
                "rounds_honest_slashed_before": before_events,
                "rounds_honest_slashed_after": after_events,
                "p_honest_slashed_before_ci95": wilson(before_events, OUT_ROUNDS),
                "p_honest_slashed_after_ci95": wilson(after_events, OUT_ROUNDS),
                "honest_wei_lost_before": before_wei,
                "honest_wei_lost_after": after_wei,
                "liar_wei_lost_before": liar_before,
                "liar_wei_lost_after": liar_after,
                "model_p_before": m_before,
                "model_p_after": m_after,
                "model_honest_wei_per_round_before": w_before,
                "model_honest_wei_per_round_after": w_after,
            }
        )
        lost_after += after_wei
        print(f"outvoted {size} seats: {rows[-1]}", file=sys.stderr)
    out["outvoted"] = {
        "liar_stake_share": 1 / 3,
        "slash_per_seat_wei": CONFIG.job_slash,
        "escalated_seats": ESCALATED,
        "rule_before": "every revealed dissenter of a settled round slashed",
        "rule_after": (
            "a split round escalates to 16 fresh seats; a revealed dissenter is slashed "
            "only if the winner holds >= 3/4 of both committees' seats"
        ),
        "rows": rows,
    }
    return lost_after


# ------------------------------------------------------------------------ splitting
def seat_units(seeds: int, seats: int, total: int, quantum: int) -> list[list[int]]:
    """r_i mod total, in units of ``quantum`` (every stake is a multiple of it)."""
    out = []
    for s in range(seeds):
        seed = keccak(b"split" + s.to_bytes(4, "big"))
        out.append(
            [
                (int.from_bytes(keccak(seed + i.to_bytes(32, "big")), "big") % total) // quantum
                for i in range(seats)
            ]
        )
    return out


def layout(share: int, split: bool) -> tuple[Ledger, list[tuple[str, int]], set[str]]:
    led, addrs = arena(52)
    honest = addrs[:10]
    attackers = addrs[10 : 10 + share] if split else addrs[10:11]
    per = (100 - share) * ETH // 10
    order: list[tuple[str, int]] = []
    if split:  # interleave: an attacker can pick its slots, the law does not care
        chunks = [attackers[i::10] for i in range(10)]
        for h, chunk in zip(honest, chunks, strict=True):
            order += [(h, per), *[(a, ETH) for a in chunk]]
    else:
        order = [*[(h, per) for h in honest[:5]], (attackers[0], share * ETH)]
        order += [(h, per) for h in honest[5:]]
    for a, stake in order:
        led.register(a, stake, "v", Role.VALIDATOR)
    return led, led.validator_slots(), set(attackers)


def scenario_split(out: dict[str, object]) -> float:
    quantum, total = ETH, 100 * ETH
    units_all = seat_units(max(SEEDS.values()), max(SIZES), total, quantum)
    rows, worst = [], 0.0
    checked = 0
    for share in SHARES:
        units = units_all[: SEEDS[share]]
        counts: dict[bool, int] = {}
        per_seed: dict[bool, list[int]] = {}
        for split in (False, True):
            led, slots, attackers = layout(share, split)
            for s in range(CHECK_SEEDS):  # the mirror below is the contract's draw
                seed = keccak(b"check" + s.to_bytes(4, "big"))
                assert led.draw(seed, 15) == draw_committee(seed, slots, 15)
                checked += 1
            bounds, owners, acc = [], [], 0
            for owner, w in slots:
                if w:
                    acc += w // quantum
                    bounds.append(acc)
                    owners.append(owner in attackers)
            seed_wins = []
            for u in units:
                hits = [owners[bisect.bisect_right(bounds, x)] for x in u]
                seed_wins.append(sum(sum(hits[:n]) * 2 > n for n in SIZES))
            per_seed[split] = seed_wins
            counts[split] = sum(seed_wins)
        n_total = len(units) * len(SIZES)
        r, lo, hi = paired_ratio_ci(per_seed[True], per_seed[False])
        model = sum(binom_tail(n, share / 100) for n in SIZES) / len(SIZES)
        rows.append(
            {
                "attacker_share": share / 100,
                "p_majority_single": counts[False] / n_total,
                "p_majority_split": counts[True] / n_total,
                "ci95_single": wilson(counts[False], n_total),
                "ci95_split": wilson(counts[True], n_total),
                "ratio": r,
                "ratio_ci95": (lo, hi),
                "model_p_majority": model,
                "split_identities": share,
                "seeds": len(units),
            }
        )
        worst = max(worst, r)
        print(f"split {share}%: {rows[-1]}", file=sys.stderr)
    out["split"] = {"seeds_by_share": SEEDS, "committee_sizes": SIZES, "rows": rows,
                    "mirror_checked_against_contract_draws": checked}  # fmt: skip
    return worst


# ------------------------------------------------------------------------- grinding
def deploy(led: Ledger, sender: str, name: str) -> object:
    art = compile_code((TESTS / f"{name}.vy").read_text(), output_formats=["abi", "bytecode"])
    w3 = led.chain.w3
    ctor = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor()
    receipt = led._send(sender, ctor, 0, f"deploy {name}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


@contextlib.contextmanager
def seeded_prevrandao(seed: int) -> Iterator[None]:
    """eth-tester's py-evm backend draws every post-merge block's mixHash from
    ``os.urandom``; draw it from a seeded generator instead, so one snapshot replayed with
    the same transactions mines the same blocks (the same block hashes and round seeds)."""
    from eth_tester.backends.pyevm import main as pyevm_main

    rng = random.Random(seed)
    real = pyevm_main.os
    pyevm_main.os = types.SimpleNamespace(urandom=rng.randbytes)
    try:
        yield
    finally:
        pyevm_main.os = real


def scenario_grind(out: dict[str, object]) -> float:
    """The same chain (snapshot, seeded prevrandao) played twice, without and with the
    grinders: every difference between the two replays is the grinders' doing."""
    led, addrs = arena(8, seeded=False)
    requester, attacker, honest = addrs[0], addrs[1], addrs[2:7]
    led.register(attacker, GRIND_SHARE * ETH, "grinder", Role.VALIDATOR)
    for h in honest:
        led.register(h, (100 - GRIND_SHARE) * ETH // 5, "h", Role.VALIDATOR)
    finalizer = deploy(led, attacker, "FinalizeGrinder")
    bumper = deploy(led, attacker, "JobGrinder")
    led.chain.advance_time(3_600)  # chain time ahead of the wall clock: blocks replay alike
    base = led.chain.snapshot()
    results: dict[bool, list[int]] = {}
    seeds: dict[bool, list[bytes]] = {}
    seen = 0
    for grinding in (False, True):
        led.chain.revert(base)
        base = led.chain.snapshot()
        with seeded_prevrandao(GRIND_SEED):
            wins, drawn, seen = grind_replay(led, requester, attacker, finalizer, bumper,
                                             grinding, seen)  # fmt: skip
        results[grinding], seeds[grinding] = wins, drawn
        print(f"grinding={grinding}: majorities {sum(wins)}/{GRIND_ROUNDS}", file=sys.stderr)
    r, lo, hi = paired_ratio_ci(results[True], results[False])
    same = sum(a == b for a, b in zip(seeds[True], seeds[False], strict=True))
    k0, k1 = sum(results[False]), sum(results[True])
    out["grind"] = {
        "rounds": GRIND_ROUNDS,
        "attacker_share": GRIND_SHARE / 100,
        "committee_seats": 3,
        "majorities_without": k0,
        "majorities_with": k1,
        "ratio_ci95": (lo, hi),
        "same_seeds_with_and_without": same,
        "p_majority_without_ci95": wilson(k0, GRIND_ROUNDS),
        "p_majority_with_ci95": wilson(k1, GRIND_ROUNDS),
        "model_p_majority": binom_tail(3, GRIND_SHARE / 100),
        "grinder_saw_a_committee": seen,
        "design": "one chain snapshot replayed without and with the grinders, every block's "
        "prevrandao (mixHash) drawn from the same seeded generator, so both replays mine "
        "the same blocks unless a grinder's transaction lands (its reverted attempts mine "
        "nothing): the pairs differ only where grinding changed a seed; the interval is the "
        "paired delta-method one (zero width when no pair differs)",
    }
    return r


def grind_replay(
    led: Ledger,
    requester: str,
    attacker: str,
    finalizer: Any,
    bumper: Any,
    grinding: bool,
    seen: int,
) -> tuple[list[int], list[bytes], int]:
    """One replay: GRIND_ROUNDS rounds of a committee-3 job, the grinders trying
    before every draw and every finalize when ``grinding``."""
    job_id = new_job(led, requester, 3, rounds=GRIND_ROUNDS + 1)
    wins, drawn = [], []
    for r in range(GRIND_ROUNDS):
        if grinding:
            fn = bumper.functions.grind(led.jobs.address, 3, PERIOD, attacker, 4)
            try:
                led._send(attacker, fn, 4, "bump")
                seen += 1  # it saw a committee of a job it created
            except Reverted:
                pass
        led.ensure_drawn(requester, job_id)
        drawn.append(led.round(job_id).seed)
        members, counts = led.committee(job_id), led.committee_seats(job_id)
        mine = sum(c for m, c in zip(members, counts, strict=True) if m == attacker)
        wins.append(int(mine * 2 > 3))
        led.chain.advance_time(2 * PERIOD)
        if grinding:
            fn = finalizer.functions.grind(led.jobs.address, job_id, r, attacker, 3)
            try:
                led._send(attacker, fn, 0, "grind")
                seen += 1  # it saw (and chose) the next committee
                continue
            except Reverted:
                pass
        led.finalize_round(requester, job_id, r)
    return wins, drawn, seen


# ------------------------------------------------------------------------ draw gas
def scenario_draw_gas(out: dict[str, object]) -> int:
    led, addrs = arena(1002)
    for i, a in enumerate(addrs[2:]):
        led.register(a, ETH + (i % 7) * ETH // 4, "v", Role.VALIDATOR)
    fn = led.registry.functions
    gas = {
        str(n): fn.draw(keccak(b"g" + bytes([n])), n).estimate_gas() - 21_000 for n in (1, 5, 16)
    }
    job_id = new_job(led, addrs[0], 5)
    led.draw_round(addrs[1], job_id)
    out["draw_gas"] = {
        "validators": 1000,
        "draw_gas_by_seats": gas,
        "draw_round_tx_gas_5_seats": led.last_gas,
        "tree_levels_read_per_seat": math.ceil(math.log2(1001)),
    }
    return gas["5"]


PARTS = ("griefing_headcount", "escape", "outvoted", "split", "grind", "draw_gas")
# what each part writes into the JSON (kept from the previous run when not rerun)
PART_KEYS = {
    "griefing_headcount": ("griefing_short_windows", "headcount", "griefing_honest_stake_lost_wei"),
    "escape": ("escape",),
    "outvoted": ("outvoted",),
    "split": ("split",),
    "grind": ("grind",),
    "draw_gas": ("draw_gas",),
}


def main(only: tuple[str, ...] = PARTS) -> None:
    """Run the parts in ``only``; the others are kept from the JSON of the previous run
    and named in ``parts_from_previous_run``."""
    t0 = time.time()
    prev: dict[str, Any] = json.loads(OUT.read_text()) if only != PARTS else {}
    out: dict[str, Any] = {k: prev[k] for p in PARTS if p not in only for k in PART_KEYS[p]}
    seconds: dict[str, float] = dict(prev.get("seconds_by_part", {}))
    runners = {
        "griefing_headcount": scenario_griefing_and_headcount,
        "escape": scenario_escape,
        "outvoted": scenario_outvoted,
        "split": scenario_split,
        "grind": scenario_grind,
        "draw_gas": scenario_draw_gas,
    }
    for part in PARTS:
        if part in only:
            t = time.time()
            runners[part](out)
            seconds[part] = round(time.time() - t, 1)
    head, esc = out["headcount"], out["escape"]
    lost = out["griefing_honest_stake_lost_wei"] + head["honest_stake_lost_wei"]
    lost_escape = esc.get("honest_stake_lost_wei", 0)
    lost_outvoted = sum(x["honest_wei_lost_after"] for x in out["outvoted"]["rows"])
    grind = out["grind"]
    result = {
        "description": __doc__.strip().splitlines()[0],
        "chain": "embedded (eth-tester + py-evm)",
        "honest_stake_lost_wei": lost + lost_escape + lost_outvoted,
        "honest_stake_lost_wei_by_scenario": {
            "griefing_and_headcount": lost,
            "escape": lost_escape,
            "outvoted_by_a_one_third_liar": lost_outvoted,
        },
        "split_majority_ratio": round(max(x["ratio"] for x in out["split"]["rows"]), 4),
        "grind_majority_ratio": round(grind["majorities_with"] / grind["majorities_without"], 4),
        "escape_success": esc["kept_stake"] / esc["attempts"],
        "draw_gas_at_1000_validators": out["draw_gas"]["draw_gas_by_seats"]["5"],
        "goals": {
            "honest_stake_lost_wei": 0,
            "split_majority_ratio": 1.05,
            "grind_majority_ratio": 1.05,
            "escape_success": 0,
        },
        **out,
        "parts_from_previous_run": [p for p in PARTS if p not in only],
        "seconds_by_part": seconds,
        "python": platform.python_version(),
        "seconds": round(time.time() - t0, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    write_docs(result)
    print(json.dumps({k: result[k] for k in list(result)[:8]}, indent=2))


def write_docs(r: dict[str, object]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from docs_table import write_block

    split = r["split"]
    assert isinstance(split, dict)
    rows = [
        "| attacker stake | P(majority) one identity | P(majority) split | ratio (95 % CI) "
        "| binomial model |",
        "|---|---|---|---|---|",
    ]
    for x in split["rows"]:
        lo, hi = x["ratio_ci95"]
        rows.append(
            f"| {x['attacker_share']:.0%} | {x['p_majority_single']:.4f} "
            f"| {x['p_majority_split']:.4f} ({x['split_identities']} ids) "
            f"| {x['ratio']:.3f} ({lo:.3f}-{hi:.3f}) | {x['model_p_majority']:.4f} |"
        )
    grind = r["grind"]
    assert isinstance(grind, dict)
    head = r["headcount"]
    assert isinstance(head, dict)
    summary = [
        "| headline | measured | goal |",
        "|---|---|---|",
        f"| honest_stake_lost_wei | {r['honest_stake_lost_wei']} | 0 |",
        f"| split_majority_ratio (worst share) | {r['split_majority_ratio']} | <= 1.05 |",
        f"| grind_majority_ratio | {r['grind_majority_ratio']} "
        f"({grind['majorities_with']} vs {grind['majorities_without']} of {grind['rounds']}; "
        f"grinders saw a committee {grind['grinder_saw_a_committee']} times) | <= 1.05 |",
        f"| escape_success | {r['escape_success']} | 0 |",
        f"| draw_gas_at_1000_validators (5 seats) | {r['draw_gas_at_1000_validators']} | log |",
        f"| Sybil head-count: seat share / stake share | {head['sybil_seat_share']} / "
        f"{head['sybil_stake_share']} ({head['sybil_roots_settled']} of {head['jobs']} "
        f"Sybil roots settled) | = stake |",
    ]
    note = (
        f"\n\nSeeds per layout: {split['seeds_by_share']} (attacker % -> seeds), "
        "the same seeds for both layouts; majorities pooled over committees of "
        f"{', '.join(map(str, split['committee_sizes']))} seats; the mirror of "
        f"`Registry.draw` was checked against the contract on "
        f"{split['mirror_checked_against_contract_draws']} draws in the same run."
    )
    k0, k1 = grind["majorities_without"], grind["majorities_with"]
    lo0, hi0 = grind["p_majority_without_ci95"]
    glo, ghi = grind["ratio_ci95"]
    summary += [
        "",
        f"Grinding: {grind['rounds']} rounds of a 3-seat job, the attacker holding "
        f"{grind['attacker_share']:.0%} of the stake, replayed from one snapshot with the "
        "same seeded prevrandao without and with the grinders (`JobGrinder.vy` bumping job "
        "ids before every draw, `FinalizeGrinder.vy` finalizing only into a favourable "
        f"committee): {grind['same_seeds_with_and_without']} of {grind['rounds']} round "
        f"seeds identical, attacker seat majorities {k1} with vs {k0} without (ratio "
        f"{r['grind_majority_ratio']}, paired 95 % CI {glo:.3f}-{ghi:.3f}); the grinders "
        f"saw a committee {grind['grinder_saw_a_committee']} times. The majority frequency "
        f"{k0 / grind['rounds']:.3f} (95 % CI {lo0:.3f}-{hi0:.3f}) against the binomial "
        f"model {grind['model_p_majority']:.3f}.",
    ]
    kept = r.get("parts_from_previous_run") or []
    assert isinstance(kept, list)
    if kept:
        summary += [
            "",
            f"Parts kept from the previous full run (`--only` reran the rest): "
            f"{', '.join(str(k) for k in kept)}; `Registry.draw` and the tree code they measure "
            "are unchanged since.",
        ]
    write_block(DOC, "adversarial-summary", "\n".join(summary))
    outv = r["outvoted"]
    assert isinstance(outv, dict)
    eth = 10**18
    orows = [
        "| seats | rounds | escalated | liar's root won | honest slashed: rounds before / "
        "after (95 % CI after) | honest ETH lost before / after | model P before / after "
        "| liar ETH lost before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in outv["rows"]:
        lo, hi = x["p_honest_slashed_after_ci95"]
        lo = max(lo, 0.0)  # float rounding of a zero count
        orows.append(
            f"| {x['seats']} | {x['rounds']} | {x.get('rounds_escalated', '-')} "
            f"| {x['liar_result_won']} "
            f"| {x['rounds_honest_slashed_before']} / {x['rounds_honest_slashed_after']} "
            f"({lo:.3f}-{hi:.3f}) "
            f"| {x['honest_wei_lost_before'] / eth:.2f} / {x['honest_wei_lost_after'] / eth:.2f} "
            f"| {x['model_p_before']:.4f} / {x['model_p_after']:.4f} "
            f"| {x['liar_wei_lost_before'] / eth:.2f} / {x['liar_wei_lost_after'] / eth:.2f} |"
        )
    onote = (
        f"\n\nA liar with {outv['liar_stake_share']:.0%} of the stake against four honest "
        f"validators, {outv['slash_per_seat_wei'] / eth} ETH slashed per seat, every member "
        "revealing; a split round's second committee is drawn and votes the same way. "
        "After: the contract's own slashes (\"" + outv["rule_after"] + '"), checked '
        'round by round against the rule. Before ("' + outv["rule_before"] + '"): counted '
        "on the same drawn seats. Stakes are topped up after each round so the share stays "
        "1/3."
    )
    write_block(DOC, "adversarial-outvoted", "\n".join(orows) + onote)
    write_block(DOC, "adversarial-split", "\n".join(rows) + note)


if __name__ == "__main__":
    if "--docs" in sys.argv:
        write_docs(json.loads(OUT.read_text()))
    elif "--only" in sys.argv:  # e.g. --only griefing_headcount,escape,outvoted,grind
        parts = tuple(sys.argv[sys.argv.index("--only") + 1].split(","))
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise SystemExit(f"unknown parts {sorted(unknown)}; parts: {', '.join(PARTS)}")
        main(parts)
    else:
        main()
