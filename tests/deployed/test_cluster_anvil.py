"""Acceptance test of deployed mode: anvil + 5 node processes on loopback.

A 3-round FedAvg job on digits with on-chain escrow, commit-reveal settlement and Merkle
claims. One provider (slowed down so that it is reliably mid-training) is SIGKILLed in
round 2 and restarted: round 2 completes at its deadline without it and pays it nothing;
it resumes in round 3. Then: the model improved, every payout is claimable, the money is
conserved, and SIGTERM stops every node gracefully (exit code 0).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from deai.job.spec import JobSpec
from deai.learning.data import DatasetName, load_dataset
from deai.learning.params import vector_from_bytes
from deai.learning.train import evaluate
from deai.ledger.anvil import find_anvil
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import JobState
from deai.node.cluster import Cluster, ClusterConfig
from deai.node.keystore import load_key
from deai.node.roles import model_for
from deai.node.signing import Signer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anvil,
    pytest.mark.skipif(
        find_anvil() is None,
        reason="anvil not found: `npm install --prefix .tools @foundry-rs/anvil` or $DEAI_ANVIL",
    ),
]

VICTIM = 4  # a provider
JOB = """
name = "acceptance"
rounds = 3
seed = 0
round_timeout_s = 25
[model]
hidden = [32]
[algorithm]
name = "fedavg"
epochs = 3
lr = 0.1
[settlement]
budget_eth = 3.0
committee = 1
[contribution]
payout = "weight"
"""


def _poll(fn: Any, timeout_s: float, step_s: float = 0.2) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = fn()
        if got:
            return got
        time.sleep(step_s)
    raise AssertionError(f"condition not met in {timeout_s} s")


def _signer(cluster: Cluster, i: int) -> Signer:
    d = Path(cluster.nodes[i]["config"]).parent
    return Signer(load_key(d / "key.json", (d / "password.txt").read_text()))


def test_five_node_job_with_crash_settles_and_pays(tmp_path: Path) -> None:
    cfg = ClusterConfig(nodes=5, faults={VICTIM: {"train_delay_s": 3.0}})
    cluster = Cluster.up(tmp_path / "cluster", cfg)
    try:
        _run(cluster)
    finally:
        codes = cluster.down()
    assert all(c == 0 for c in codes.values()), codes  # SIGTERM: graceful, exit code 0


def _run(cluster: Cluster) -> None:
    requester, validator = cluster.client(0), cluster.client(1)
    victim = cluster.nodes[VICTIM]["address"]
    ledger = cluster.ledger()
    providers = [n["address"] for n in cluster.nodes if n["role"] == "provider"]
    before = {p: ledger.balance(p) for p in providers}

    job = requester.submit_job(JOB, _signer(cluster, 0))
    job_id, chain_id = job["job_id"], job["chain_job_id"]

    def in_round(r: int) -> bool:
        st = validator.status()["validator"]["jobs"].get(job_id)
        return bool(st and st["round"] == r and not st["closed"])

    _poll(lambda: in_round(2), 60, 0.05)
    time.sleep(0.5)  # the victim holds its round-2 task (it trains for >= 3 s)
    cluster.kill(VICTIM)  # SIGKILL: a crash
    cluster.stop_node(VICTIM)  # reap it
    cluster.start_node(VICTIM)  # restart: it replays its journal and rejoins
    cluster.wait_healthy(60, [VICTIM])

    status = _poll(
        lambda: (s := requester.job_status(job_id))["done"] and s["chain"]["state"] == "DONE" and s,
        120,
    )
    vs = validator.status()["validator"]
    outcomes = {o["round"]: o for o in vs["outcomes"] if o["job_id"] == job_id}
    settled = {s["round"]: s for s in vs["settlements"][job_id]}
    assert sorted(outcomes) == [1, 2, 3] and all(s["error"] is None for s in settled.values())
    assert all(s["settled"] for s in settled.values())

    # the crash: round 2 closed at its deadline without the victim, which earned nothing
    assert outcomes[2]["missing"] == [victim]
    assert outcomes[2]["closed_s"] - outcomes[2]["started_s"] >= 24
    assert victim not in settled[2]["round_payout"]
    assert victim in outcomes[1]["accepted"] and settled[1]["round_payout"][victim] > 0
    # the restarted node resumed: it took part in round 3
    assert victim in outcomes[3]["accepted"] and settled[3]["round_payout"][victim] > 0
    assert len(outcomes[3]["accepted"]) == 3

    # the model improved; the requester serves it by hash and the chain agrees on it
    spec = JobSpec.from_json(status["spec_json"])
    model = model_for(spec)
    params = vector_from_bytes(requester.fetch(status["model_hash"]), model.dim)
    test = load_dataset(DatasetName.DIGITS, seed=0).test
    _, acc0 = evaluate(model, model.initial_vector(), test)
    _, acc = evaluate(model, params, test)
    assert acc > acc0 + 0.3, (acc0, acc)
    assert bool(torch.isfinite(params).all())
    view = ledger.job(chain_id)
    assert view.state == JobState.DONE
    assert view.model_hash.hex() == status["model_hash"]

    # payouts are claimable with the validator's published table
    table = vs["payout_tables"][job_id]
    tree = PayoutTree(chain_id, table)
    assert "0x" + tree.root.hex() == "0x" + view.root.hex()
    assert tree.total == view.payable_total == sum(s["total"] for s in settled.values())
    claimer = ledger.chain.accounts[0]  # anyone may submit a claim; money goes to the payee
    ledger.claim_many(claimer, chain_id, tree, [p for p in providers if tree.amount(p) > 0])
    for p in providers:
        assert ledger.balance(p) - before[p] == tree.amount(p)
        assert ledger.claimed(chain_id, p) == tree.amount(p)

    # money is conserved: deposit = claimed + refunded + still escrowed, and the contract
    # holds exactly the escrow plus what it owes (refunds awaiting withdrawal)
    view = ledger.job(chain_id)
    assert view.claimed_total == view.payable_total
    assert view.deposit == view.claimed_total + view.refunded + ledger.escrow(chain_id)
    jobs_balance = ledger.balance(ledger.deployment.jobs)
    assert jobs_balance == ledger.escrow(chain_id) + ledger.owed(spec.requester)
    for c in (requester, validator):
        c.close()
