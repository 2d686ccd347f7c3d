"""Round latency of a deployed network: anvil + 5 node processes on loopback.

Starts a local cluster (1 requester, 1 validator, 3 providers; ``deai.node.cluster``),
runs a FedAvg job on digits with on-chain escrow and commit-reveal settlement, and
reads each round's timeline from the nodes' ``/v1/status``:

* ``round_latency_s``: from the validator opening a round (train tasks sent) to that
  round's result being finalized on chain (commit, reveal, finalize mined);
* ``compute``: the slowest provider's local training of the round (the critical path);
* ``chain``: the validator's settlement transactions for the round;
* ``network``: the rest: HTTP transfers, envelope signing and checking, decoding,
  validation and aggregation.

Writes ``benchmarks/results/deployed_round.json``. Needs the anvil binary
(``npm install --prefix .tools @foundry-rs/anvil``). Run:
``python benchmarks/deployed_round.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from deai.node.cluster import Cluster, ClusterConfig
from deai.node.keystore import load_key
from deai.node.signing import Signer

OUT = Path(__file__).parent / "results" / "deployed_round.json"


def job_text(rounds: int) -> str:
    return f"""
name = "bench"
rounds = {rounds}
seed = 0
round_timeout_s = 60
[model]
hidden = [64]
[algorithm]
name = "fedavg"
epochs = 1
lr = 0.1
"""


def measure(cluster: Cluster, rounds: int) -> dict[str, Any]:
    d = Path(cluster.nodes[0]["config"]).parent
    signer = Signer(load_key(d / "key.json", (d / "password.txt").read_text()))
    requester, validator = cluster.client(0), cluster.client(1)
    job = requester.submit_job(job_text(rounds), signer)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        st = requester.job_status(job["job_id"])
        if st["done"] and st.get("chain", {}).get("state") == "DONE":
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("job did not finish in 300 s")
    vs = validator.status()["validator"]
    outcomes = {o["round"]: o for o in vs["outcomes"]}
    settled = {s["round"]: s for s in vs["settlements"]}
    trains = [
        t
        for n in cluster.nodes
        if n["role"] == "provider"
        for t in cluster.client(n["index"]).status()["metrics"]["train"]
    ]
    per_round = []
    for r in sorted(outcomes):
        o, s = outcomes[r], settled[r]
        latency = s["settled_at"] - o["started_s"]
        compute = max(
            (t["compute_s"] for t in trains if o["started_s"] <= t["start"] <= o["closed_s"]),
            default=0.0,
        )
        chain = s["chain_s"]
        per_round.append(
            {
                "round": r,
                "round_latency_s": latency,
                "collect_s": o["closed_s"] - o["started_s"],
                "compute_s": compute,
                "chain_s": chain,
                "network_s": max(0.0, latency - compute - chain),
            }
        )
    for c in (requester, validator):
        c.close()
    return {"job": job, "rounds": per_round}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deai-bench-") as tmp:
        cluster = Cluster.up(Path(tmp) / "cluster", ClusterConfig(nodes=5))
        startup_s = time.perf_counter() - t0
        try:
            got = measure(cluster, args.rounds)
        finally:
            cluster.down()
    rounds = got["rounds"]
    mean = statistics.fmean
    latency = mean(r["round_latency_s"] for r in rounds)
    shares = {
        k: mean(r[f"{k}_s"] for r in rounds) / latency for k in ("chain", "network", "compute")
    }
    result = {
        "benchmark": "deployed_round",
        "nodes": 5,
        "providers": 3,
        "validators": 1,
        "rounds": len(rounds),
        "model": "mlp hidden=[64] on digits, FedAvg, 1 local epoch",
        "round_latency_s": latency,
        "round_latency_s_median": statistics.median(r["round_latency_s"] for r in rounds),
        "share": shares,
        "per_round": rounds,
        "cluster_startup_s": startup_s,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "notes": "loopback HTTP, anvil with a block per transaction; shares are of the mean "
        "round latency (open -> finalized on chain); network = latency - compute - chain",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("round_latency_s", "share")}, indent=2))


if __name__ == "__main__":
    main()
