"""Gas of the deai ledger on the embedded EVM (py-evm, Prague rules, same bytecode as any
chain): gas per committee round for committees of 3, 5 and 7, gas per claim, and whole-job
totals for 10, 100 and 1000 providers.

A "round" is its ``draw_round``, every commit and reveal of its committee and the
``finalize_round`` that settles it and opens the next round (steady state: a middle round
of the job). A "job" is ``create_job`` + ROUNDS rounds + every provider's payout claimed
once at the end, in batches of 64 through ``claim_many`` (single ``claim`` numbers are
measured on a snapshot and reported apart). Payees are EMPTY accounts (never funded, so
every payout pays the 25,000 gas of account creation). The headline
``gas_per_provider_per_job_at_1000`` plays JOBS_PER_JOIN whole jobs of 1000 providers and
lets every provider claim its leaves of all of them in one ``claim_jobs`` transaction (one
transfer into its still-empty account), and adds each provider's own Registry ``join``
amortized over those JOBS_PER_JOIN jobs and the validators' joins over the jobs' providers.
The same count with job-by-job ``claim_many`` claims is reported beside it.

Run: ``python benchmarks/gas.py`` (several minutes); writes benchmarks/results/gas.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address

from deai.ledger.chain import EmbeddedChain
from deai.ledger.client import Ledger
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import LedgerConfig, Role, RoundResult, result_commitment

ETH = 10**18
ROUNDS = 10  # rounds per job in the totals
TOTALS_COMMITTEE = 5  # committee size in the totals
PROVIDER_COUNTS = (10, 100, 1000)
COMMITTEES = (3, 5, 7)
BATCH = 64
SINGLE_SAMPLE = 20  # single claims measured per provider count (on a snapshot)
JOBS_PER_JOIN = 10  # jobs a provider works per registration (amortizes its join)
CLAIMERS = 64  # providers that claim across the JOBS_PER_JOIN jobs (the first leaves)
SALT = b"\x42" * 32
PREVRANDAO_SEED = 10
OUT = Path(__file__).parent / "results" / "gas.json"
DOC = Path(__file__).parents[1] / "docs" / "ledger.md"


def providers(n: int) -> list[str]:
    return [to_checksum_address(keccak(b"provider" + i.to_bytes(4, "big"))[-20:]) for i in range(n)]


def setup() -> tuple[Ledger, list[str], dict[str, float]]:
    chain = EmbeddedChain()  # providers are not funded: empty payee accounts
    acc = chain.accounts[:10]
    ledger = Ledger.deploy(chain, LedgerConfig(min_stake=ETH, withdrawal_delay=10_000))
    joins = []
    for i, v in enumerate(acc[1:8]):  # >= 8 ETH: a member can lock job_slash for 7 seats
        ledger.register(v, (8 + i) * ETH, f"http://validator-{i}:8000", Role.VALIDATOR)
        joins.append(ledger.last_gas)
    snap = chain.snapshot()
    ledger.register(acc[8], ETH, "http://10.0.0.8:8000", Role.PROVIDER)  # a provider's join
    provider_join = ledger.last_gas
    chain.revert(snap)
    return ledger, acc, {"validator_joins": sum(joins), "provider_join": provider_join}


def play_round(
    ledger: Ledger, job_id: int, payees: list[str], round_index: int
) -> tuple[int, PayoutTree]:
    """Play one honest round; returns its gas and the payout tree."""
    budget = ledger.job(job_id).round_budget
    per = budget // len(payees)
    tree = PayoutTree(job_id, {p: per * (round_index + 1) for p in payees})
    result = RoundResult(keccak(round_index.to_bytes(32, "big")), tree.root, per * len(payees))
    start = len(ledger.gas_log)
    ledger.ensure_drawn(ledger.job(job_id).requester, job_id)
    members = ledger.committee(job_id)
    for i, m in enumerate(members):
        ledger.commit(
            m, job_id, round_index, result_commitment(job_id, round_index, m, result, SALT), index=i
        )
    for i, m in enumerate(members):
        ledger.reveal(m, job_id, round_index, result, SALT, index=i)
    ledger.finalize_round(m, job_id, round_index)
    return sum(g for _, g in ledger.gas_log[start:]), tree


def run_job(
    ledger: Ledger,
    requester: str,
    n_providers: int,
    committee: int,
    rounds: int,
    claims: bool,
    keep: list[tuple[int, PayoutTree]] | None = None,
) -> dict[str, float]:
    """One job; ``keep``: append (job id, final tree) for claims made later."""
    payees = providers(n_providers)
    start = len(ledger.gas_log)
    job_id = ledger.create_job(
        requester,
        budget=rounds * ETH,
        spec_hash=b"\x01" * 32,
        rounds=rounds,
        committee_size=committee,
        commit_period=3600,
        reveal_period=3600,
        claim_period=86400,
    )
    create = ledger.last_gas
    round_gas = []
    for r in range(rounds):
        gas, tree = play_round(ledger, job_id, payees, r)
        round_gas.append(gas)
    out: dict[str, float] = {
        "create_job": create,
        "round_gas": round_gas[rounds // 2],
        "rounds_total": sum(round_gas),
    }
    if keep is not None:
        keep.append((job_id, tree))
    if not claims:
        return out
    relayer = requester
    snap = ledger.chain.snapshot()
    before_claims = ledger.chain.snapshot()
    singles = []
    for p in payees[:SINGLE_SAMPLE]:
        ledger.claim(relayer, job_id, p, tree.amount(p), tree.proof(p))
        singles.append(ledger.last_gas)
    ledger.chain.revert(snap)
    del ledger.gas_log[len(ledger.gas_log) - len(singles) :]
    batched_start = len(ledger.gas_log)
    for i in range(0, len(payees), BATCH):
        ledger.claim_many(relayer, job_id, tree, payees[i : i + BATCH])
    batched = [g for _, g in ledger.gas_log[batched_start:]]
    job_total = sum(g for _, g in ledger.gas_log[start:])
    out |= {
        "claim_single_mean": sum(singles) / len(singles),
        "claim_batched_per_provider": sum(batched) / len(payees),
        "claims_total": sum(batched),
        "job_total": job_total,
        "job_total_per_provider": job_total / n_providers,
        "snapshot_before_claims": before_claims,
    }
    assert ledger.job(job_id).claimed_total == tree.total
    assert all(ledger.balance(p) == tree.amount(p) for p in payees[:3])  # were empty
    return out


def provider_claims_across_jobs(
    ledger: Ledger, requester: str, first: tuple[int, PayoutTree]
) -> dict[str, Any]:
    """Providers claim their leaves of JOBS_PER_JOIN done jobs of the same 1000 providers
    in one ``claim_jobs`` transaction each: one transfer (and one account creation) per
    provider per claim. ``first`` is the measured 10-round job of 1000 providers; the
    other JOBS_PER_JOIN - 1 jobs are settled in one round each, only so that their leaves
    exist (the claim gas does not depend on how many rounds built the root). The claimers
    are the CLAIMERS providers at leaf indices 0..CLAIMERS-1: each job's claim bitmap
    word is first written by one of them, so the mean slightly overstates the cost (a
    first write per CLAIMERS leaves instead of per 256)."""
    n = 1000
    everyone = providers(n)
    jobs: list[tuple[int, PayoutTree]] = [first]
    for _ in range(JOBS_PER_JOIN - 1):
        run_job(ledger, requester, n, TOTALS_COMMITTEE, 1, claims=False, keep=jobs)
    payees = [a for a in everyone if all(t.index(a) < CLAIMERS for _, t in jobs)]
    assert len(payees) == CLAIMERS
    start = len(ledger.gas_log)
    for p in payees:  # each payee account is empty until its own claim
        assert ledger.balance(p) == 0
        ledger.claim_jobs(requester, p, jobs)
    claims = [g for _, g in ledger.gas_log[start:]]
    for job_id, tree in jobs:
        assert ledger.job(job_id).claimed_total == sum(tree.amount(p) for p in payees)
    assert all(ledger.balance(p) == sum(t.amount(p) for _, t in jobs) for p in payees)
    leaves = len(payees) * JOBS_PER_JOIN
    return {
        "jobs": JOBS_PER_JOIN,
        "providers": n,
        "claimers": f"the {len(payees)} providers at leaf indices 0..{CLAIMERS - 1}",
        "claim_jobs_txs": len(claims),
        "claim_jobs_gas_per_tx": sum(claims) / len(claims),
        "claims_gas_per_provider_per_job": sum(claims) / leaves,
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from ledger_adversarial import seeded_prevrandao

    with seeded_prevrandao(PREVRANDAO_SEED):  # the same blocks, seeds and committees
        run()


def run() -> None:
    t0 = time.time()
    ledger, acc, joins = setup()
    requester = acc[0]
    by_committee = {}
    for c in COMMITTEES:
        snap = ledger.chain.snapshot()
        r = run_job(ledger, requester, 10, c, 3, claims=False)
        by_committee[str(c)] = r["round_gas"]
        ledger.chain.revert(snap)
    by_providers, totals = {}, {}
    across: dict[str, Any] = {}
    for n in PROVIDER_COUNTS:
        snap = ledger.chain.snapshot()
        keep: list[tuple[int, PayoutTree]] = []
        r = run_job(ledger, requester, n, TOTALS_COMMITTEE, ROUNDS, claims=True, keep=keep)
        before_claims = int(r.pop("snapshot_before_claims"))
        if n == 1000:  # claims across jobs, from the state before the per-job claims
            ledger.chain.revert(before_claims)
            across = provider_claims_across_jobs(ledger, requester, keep[0])
            print(f"claims across jobs: {across}", file=sys.stderr)
        ledger.chain.revert(snap)
        by_providers[str(n)] = r["round_gas"]
        totals[str(n)] = r
        print(f"{n} providers: {r}", file=sys.stderr)
    at_1000 = totals["1000"]
    amortized = joins["provider_join"] / JOBS_PER_JOIN + joins["validator_joins"] / (
        JOBS_PER_JOIN * 1000
    )
    job_rounds = (at_1000["create_job"] + at_1000["rounds_total"]) / 1000
    across["job_gas_per_provider_per_job"] = job_rounds + across["claims_gas_per_provider_per_job"]
    headline = across["job_gas_per_provider_per_job"] + amortized
    per_job_claims = at_1000["job_total_per_provider"] + amortized
    result = {
        "description": __doc__.strip().splitlines()[0],
        "chain": "embedded (eth-tester + py-evm)",
        "rounds_per_job": ROUNDS,
        "committee_in_totals": TOTALS_COMMITTEE,
        "claim_batch": BATCH,
        "round_gas_by_committee": by_committee,
        "round_gas_by_providers": by_providers,
        "gas_per_claim_single": {n: t["claim_single_mean"] for n, t in totals.items()},
        "gas_per_claim_batched": {
            n: t["claim_batched_per_provider"]
            for n, t in totals.items()
            if t["claim_batched_per_provider"] == t["claim_batched_per_provider"]
        },
        "totals_by_providers": {
            n: {
                k: t[k]
                for k in (
                    "create_job",
                    "rounds_total",
                    "claims_total",
                    "job_total",
                    "job_total_per_provider",
                )
            }
            for n, t in totals.items()
        },
        "gas_per_provider_per_job_at_1000": round(headline, 1),
        "gas_per_provider_per_job_at_1000_counted": (
            f"(create_job + {ROUNDS} rounds incl. draws, committee {TOTALS_COMMITTEE}, of "
            f"the 1000-provider job) / 1000 + the mean claim gas per leaf when a provider "
            f"claims its leaves of {JOBS_PER_JOIN} such jobs in one claim_jobs tx into "
            f"its empty account (measured for {CLAIMERS} providers, the first "
            f"{CLAIMERS} leaves) + provider join / {JOBS_PER_JOIN} + 7 validator joins / "
            f"({JOBS_PER_JOIN} * 1000)"
        ),
        "claims_across_jobs": across,
        "gas_per_provider_per_job_at_1000_claim_many_per_job": round(per_job_claims, 1),
        "gas_per_provider_per_job_at_1000_claim_many_per_job_counted": (
            "(create_job + 10 rounds incl. draws + 1000 claims in claim_many batches of 64, "
            "per job, to empty accounts) / 1000 + the same joins: every job's payout is a "
            "transfer that creates an account"
        ),
        "job_gas_per_provider_at_1000_without_joins": round(
            across["job_gas_per_provider_per_job"], 1
        ),
        "provider_join_gas": joins["provider_join"],
        "validator_joins_gas": joins["validator_joins"],
        "jobs_per_join": JOBS_PER_JOIN,
        "payee_accounts": "empty (each payout creates the account: +25,000 gas)",
        "goal_gas_per_provider_per_job": 60_000,
        "python": platform.python_version(),
        "seconds": round(time.time() - t0, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    write_docs(result)
    print(json.dumps(result, indent=2))


def write_docs(r: dict[str, Any]) -> None:
    """The gas tables of docs/ledger.md, from the JSON (``--docs`` rewrites them only)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from docs_table import write_block

    lines = ["| committee | gas per round (draw + commits + reveals + finalize) |", "|---|---|"]
    lines += [f"| {c} | {g:,} |" for c, g in r["round_gas_by_committee"].items()]
    lines += [
        "",
        "| providers | single `claim` | per provider in `claim_many` | job per provider |",
    ]
    lines += ["|---|---|---|---|"]
    for n, t in r["totals_by_providers"].items():
        lines.append(
            f"| {n} | {r['gas_per_claim_single'][n]:,.0f} "
            f"| {r['gas_per_claim_batched'].get(n, float('nan')):,.0f} "
            f"| {t['job_total_per_provider']:,.0f} |"
        )
    head, goal = r["gas_per_provider_per_job_at_1000"], r["goal_gas_per_provider_per_job"]
    t1000 = r["totals_by_providers"]["1000"]
    verdict = "meets" if head <= goal else f"misses by {head / goal - 1:.0%}"
    lines += [
        "",
        f"**gas_per_provider_per_job_at_1000 = {head:,.0f}** ({verdict} the {goal:,} goal), "
        f"counted as {r['gas_per_provider_per_job_at_1000_counted']}. Payees are "
        f"{r['payee_accounts']}; a provider's join costs {r['provider_join_gas']:,} gas "
        f"(amortized over {r['jobs_per_join']} jobs). Without joins: "
        f"{r['job_gas_per_provider_at_1000_without_joins']:,.0f}; "
        f"claims {r['claims_across_jobs']['claims_gas_per_provider_per_job']:,.0f} per "
        f"provider per job ({r['claims_across_jobs']['claim_jobs_gas_per_tx']:,.0f} per "
        "`claim_jobs` transaction). Claimed job by job instead (`claim_many`, a transfer "
        "that creates an account for every job): "
        f"{r['gas_per_provider_per_job_at_1000_claim_many_per_job']:,.0f}.",
        "",
        "Its parts: create_job + rounds / 1000 = "
        f"{(t1000['create_job'] + t1000['rounds_total']) / 1000:,.0f}; claim per leaf "
        f"{r['claims_across_jobs']['claims_gas_per_provider_per_job']:,.0f}; provider join "
        f"/ {r['jobs_per_join']} = {r['provider_join_gas'] / r['jobs_per_join']:,.0f}; "
        f"validator joins / ({r['jobs_per_join']} * 1000) = "
        f"{r['validator_joins_gas'] / (r['jobs_per_join'] * 1000):,.0f}.",
    ]
    write_block(DOC, "gas", "\n".join(lines))


if __name__ == "__main__":
    if "--docs" in sys.argv:
        write_docs(json.loads(OUT.read_text()))
    else:
        main()
