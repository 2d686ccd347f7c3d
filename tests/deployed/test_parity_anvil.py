"""Parity (issue #12 item 5, #20 must-exist 8): the same job file and requester nonce, run
by ``deai.simulate`` and by a real 5-node local cluster on anvil (1 requester, 1 validator,
3 provider processes), end with the same final model hash, bit for bit.

What makes them equal is public: the job id is the spec's hash (its content plus the
nonce), provider ``i`` of the spec holds shard ``i`` of the same seeded partition on both
sides, training seeds come from the spec, and both run one intra-op thread. The chain's
recorded model hash (settlement on anvil) is the same hash too.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deai import api
from deai.ledger.anvil import find_anvil
from deai.ledger.types import JobState
from deai.node.cluster import Cluster, ClusterConfig
from deai.node.keystore import load_key
from deai.node.signing import Signer
from deai.sim.scenario import Scenario

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anvil,
    pytest.mark.skipif(find_anvil() is None, reason="anvil not found (.tools/ or $DEAI_ANVIL)"),
]

NONCE = "parity-1"


def job_text(requester: str, providers: list[str], validators: list[str]) -> str:
    quoted = ", ".join(f'"{p}"' for p in providers)
    return f"""
name = "parity"
rounds = 2
seed = 0
round_timeout_s = 60
nonce = "{NONCE}"
[parties]
requester = "{requester}"
providers = [{quoted}]
validators = ["{validators[0]}"]
[model]
hidden = [16]
[algorithm]
name = "fedavg"
epochs = 1
lr = 0.1
[settlement]
budget_eth = 1.0
committee = 1
"""


def _poll(fn: Any, timeout_s: float, step_s: float = 0.3) -> Any:
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


def _operator_cli(cluster: Cluster, job_id: str, status: dict[str, Any]) -> None:
    """`deai job status / claim / withdraw` against the finished job (finding 8)."""
    from typer.testing import CliRunner

    from deai.cli import app

    reports = status["round_reports"]
    assert [r["round"] for r in reports] == [1, 2]
    assert all(0.0 < r["accuracy"] <= 1.0 for r in reports), reports  # validation accuracy
    runner = CliRunner()
    req_cfg = cluster.nodes[0]["config"]
    out = runner.invoke(app, ["job", "status", job_id, "--config", req_cfg])
    assert out.exit_code == 0, out.output
    assert "DONE" in out.output and "can claim" in out.output
    table = {k.lower(): int(v) for k, v in status["payout_table"].items()}
    provider = max(
        (n for n in cluster.nodes if n["role"] == "provider"),
        key=lambda n: table.get(n["address"].lower(), 0),
    )
    assert table[provider["address"].lower()] > 0
    out = runner.invoke(app, ["job", "claim", job_id, "--config", provider["config"]])
    assert out.exit_code == 0, out.output
    assert "claimed" in out.output
    ledger = cluster.ledger()
    assert ledger.claimed(status["chain_job_id"], provider["address"]) > 0
    out = runner.invoke(app, ["job", "claim", job_id, "--config", provider["config"]])
    assert out.exit_code == 0 and "nothing to claim" in out.output, out.output
    out = runner.invoke(app, ["job", "withdraw", "--config", req_cfg])
    assert out.exit_code == 0, out.output


def test_cluster_and_simulation_train_the_same_model(tmp_path: Path) -> None:
    cluster = Cluster.up(tmp_path / "cluster", ClusterConfig(nodes=5, validators=1))
    try:
        nodes = cluster.nodes
        providers = [n["address"] for n in nodes if n["role"] == "provider"]  # shard order
        validators = [n["address"] for n in nodes if n["role"] == "validator"]
        text = job_text(nodes[0]["address"], providers, validators)
        requester = cluster.client(0)
        job = requester.submit_job(text, _signer(cluster, 0))
        assert job["nonce"] == NONCE
        status = _poll(
            lambda: (
                (s := requester.job_status(job["job_id"]))["done"]
                and s.get("chain", {}).get("state") == "DONE"
                and s
            ),
            150,
        )
        chain_hash = "0x" + cluster.ledger().job(job["chain_job_id"]).model_hash.hex()
        requester.close()
        _operator_cli(cluster, job["job_id"], status)
    finally:
        cluster.down()

    scenario = Scenario.model_validate(
        {
            **tomllib.loads(text),
            "simulation": {
                "data": {"dataset": "digits", "partition": "iid"},
                "nodes": [
                    {"role": "provider", "count": len(providers)},
                    {"role": "validator", "count": 1},
                ],
            },
        }
    )
    sim = api.simulate(scenario)
    assert sim.job_id == job["job_id"]  # same content, same nonce: the same job
    assert sim.model_hash is not None
    assert status["model_hash"] == sim.model_hash, (status["model_hash"], sim.model_hash)
    assert chain_hash == "0x" + sim.model_hash
    assert JobState[status["chain"]["state"]] == JobState.DONE
