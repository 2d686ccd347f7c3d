"""Issue #20 findings 1-4 on a real network: anvil + 6 node processes (1 requester, 3
validators on every round's committee, 2 providers).

The coordinator (``spec.validators[0]``) is SIGKILLed in round 2 and restarted. Before
the fix the job stayed ``OPEN`` with its escrow stuck and the restarted node had no jobs.
Now the next member drives the silent round, the restarted validator resumes its rounds
and settlement duties from its journal, the job ends ``DONE``, no responsive validator is
slashed, the published payout table equals what the chain pays (aborted rounds left
out), and every provider's claim succeeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from deai.ledger.anvil import find_anvil
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import JobState
from deai.node.cluster import Cluster, ClusterConfig
from deai.node.keystore import load_key
from deai.node.signing import Signer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anvil,
    pytest.mark.skipif(find_anvil() is None, reason="anvil not found (.tools/ or $DEAI_ANVIL)"),
]


def job_text(
    requester: str,
    providers: list[str],
    validators: list[str],
    nonce: str,
    rounds: int = 3,
    windows: int = 40,
) -> str:
    q = ", ".join
    return f"""
name = "failover"
rounds = {rounds}
seed = 0
round_timeout_s = 20
nonce = "{nonce}"
[parties]
requester = "{requester}"
providers = [{q(f'"{p}"' for p in providers)}]
validators = [{q(f'"{v}"' for v in validators)}]
[model]
hidden = [16]
[algorithm]
name = "fedavg"
epochs = 1
lr = 0.1
[settlement]
budget_eth = 3.0
committee = 3
commit_period_s = {windows}
reveal_period_s = {windows}
"""


def _poll(fn: Any, timeout_s: float, step_s: float = 0.3) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            got = fn()
        except Exception:  # a node restarting: try again
            got = None
        if got:
            return got
        time.sleep(step_s)
    raise AssertionError(f"condition not met in {timeout_s} s")


def _done(requester: Any, job_id: str) -> bool:
    s = requester.job_status(job_id)
    return bool(s["done"] and s.get("chain", {}).get("state") == "DONE")


def _signer(cluster: Cluster, i: int) -> Signer:
    d = Path(cluster.nodes[i]["config"]).parent
    return Signer(load_key(d / "key.json", (d / "password.txt").read_text()))


@pytest.mark.xfail(
    reason="open (issue #20): after the merge of the stake-drawn ledger the job does not "
    "finish within 180 s once the coordinator is SIGKILLed and restarted; under diagnosis",
    strict=False,
)
def test_coordinator_killed_and_restarted_job_finishes_everyone_paid(tmp_path: Path) -> None:
    cfg = ClusterConfig(nodes=6, validators=3, faults={4: {"train_delay_s": 2.0}})
    cluster = Cluster.up(tmp_path / "cluster", cfg)
    try:
        _run(cluster)
    finally:
        cluster.down()


def _run(cluster: Cluster) -> None:
    nodes = cluster.nodes
    providers = [n["address"] for n in nodes if n["role"] == "provider"]
    validators = [n["address"] for n in nodes if n["role"] == "validator"]
    coordinator = 1  # node 1 is validators[0]
    requester, follower = cluster.client(0), cluster.client(2)
    ledger = cluster.ledger()

    # finding 1: with default windows (1 h) and every validator responsive, jobs run back
    # to back settle every round and slash nobody (honest validators slept 1,197 s and
    # were slashed before the fix)
    for k in range(2):
        text = job_text(nodes[0]["address"], providers, validators, f"d{k}", 1, 3600)
        quick = requester.submit_job(text, _signer(cluster, 0))["job_id"]
        _poll(lambda j=quick: _done(requester, j), 180, 0.5)
    assert ledger.events("MemberSlashed") == []
    job = requester.submit_job(
        job_text(nodes[0]["address"], providers, validators, "f1"), _signer(cluster, 0)
    )
    job_id, chain_id = job["job_id"], job["chain_job_id"]

    def in_round(r: int) -> bool:
        st = follower.status()["validator"]["jobs"].get(job_id)
        return bool(st and st["round"] == r and not st["closed"])

    _poll(lambda: in_round(2), 120, 0.05)
    cluster.kill(coordinator)  # SIGKILL mid-round
    cluster.stop_node(coordinator)
    time.sleep(2.0)
    cluster.start_node(coordinator)  # restart: it resumes from its journal
    cluster.wait_healthy(180, [coordinator])

    _poll(
        lambda: (
            (s := requester.job_status(job_id))["done"]
            and s.get("chain", {}).get("state") == "DONE"
        ),
        240,
        1.0,
    )
    view = ledger.job(chain_id)
    assert view.state == JobState.DONE

    report = follower.job_status(job_id)  # a validator's report: rounds and the table
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    settled = [r["settlement"] for r in rounds]
    assert all(s is not None and s["settled"] for s in settled), settled
    slashed = {a for s in settled for a in s["slashed"]}
    assert not slashed & {validators[1].lower(), validators[2].lower()}, slashed
    assert not slashed & set(validators[1:]), slashed

    # the published table is what the chain pays: every provider claims all of it
    table = {k: int(v) for k, v in report["payout_table"].items()}
    tree = PayoutTree(chain_id, table)
    assert tree.root == view.root and tree.total == view.payable_total
    claimer = ledger.chain.accounts[0]
    payees = [p for p in providers if tree.amount(p) > 0]
    assert payees == providers
    ledger.claim_many(claimer, chain_id, tree, payees)
    for p in providers:
        assert ledger.claimed(chain_id, p) == tree.amount(p) > 0
    # the restarted coordinator resumed the job (it had `jobs {}` before the fix)
    restarted = cluster.client(coordinator).status()["validator"]["jobs"]
    assert job_id in restarted
    for c in (requester, follower):
        c.close()
