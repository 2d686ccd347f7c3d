"""A deployed network on its good and bad days: anvil + 6 node processes on loopback
(1 requester, 3 validators, 2 providers; ``deai.node.cluster``). Each round's chain
committee is 3 seats drawn by stake, with replacement, from the 3 validators (10 ETH each,
the coordinator 3 ETH: enough to lock every seat it is drawn for).

Measured from the running nodes and the chain (nothing computed from a formula):

* ``honest_validator_slashes``: ``MemberSlashed`` events over ``--jobs`` (>= 20) jobs run
  back to back with the default commit/reveal windows (1 h each), every node honest and
  responsive (goal 0); ``rounds_settled`` / ``rounds_total`` beside it.
* ``round_latency_s``: per round, from the validator opening it (train tasks sent) to the
  round being final on chain (commit, reveal, finalize mined), mean with a 95 % interval
  (t distribution over rounds) and the median.
* ``unauthenticated_bytes_stored``: bytes added to a provider's artifact store while
  never-registered keys send 8 signed 7.9 MB updates and 4 x 7 MB artifact PUTs and
  anonymous clients send 16 unsigned 8 MB bodies (goal 0).
* ``health_p99_ms_during_chain_stall``: p99 latency of ``GET /v1/health`` on the requester
  while anvil is stopped (SIGSTOP) for ``--stall-s`` seconds and job status requests that
  read the chain keep coming (goal < 500 ms).
* ``coordinator_kill_job_completed``: a 3-round job whose coordinator is SIGKILLed in round
  2 and restarted ends ``DONE`` on chain (goal true). Where a round can only wait out a
  window for the crashed member, anvil's clock is moved to the deadline
  (``DeadlineSkipper``; the skips are listed in ``coordinator_kill_skips``).
* ``cli_status_s``: wall time of ``deai job status ID --url ...`` as a fresh process
  (import, one HTTP call, print), median and 95 % interval over ``--cli-runs`` calls
  (goal < 1 s; measured on the loaded 2-core machine, so pessimistic).
* ``claims_all_succeeded``: every provider claims every job's table amount, with the
  table of the requester's report (as ``deai job claim --url REQUESTER``; goal true).
* ``incomplete_rounds_seen`` / ``abstained_rounds_seen``: rounds validator 2 closed at the
  deadline without some update, and rounds it abstained from.

Writes ``benchmarks/results/deployed_round.json``. Needs anvil (``.tools/``). Run:
``python benchmarks/deployed_round.py [--jobs 20]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from deai.ledger.merkle import PayoutTree
from deai.node.cluster import Cluster, ClusterConfig, DeadlineSkipper
from deai.node.keystore import load_key
from deai.node.messages import Update, encode
from deai.node.signing import Signer

OUT = Path(__file__).parent / "results" / "deployed_round.json"
MB = 1024 * 1024


def job_text(cluster: Cluster, name: str, rounds: int, nonce: str) -> str:
    nodes = cluster.nodes
    providers = ", ".join(f'"{n["address"]}"' for n in nodes if n["role"] == "provider")
    validators = ", ".join(f'"{n["address"]}"' for n in nodes if n["role"] == "validator")
    return f"""
name = "{name}"
rounds = {rounds}
seed = 0
round_timeout_s = 30
nonce = "{nonce}"
[parties]
requester = "{nodes[0]["address"]}"
providers = [{providers}]
validators = [{validators}]
[model]
hidden = [16]
[algorithm]
name = "fedavg"
epochs = 1
lr = 0.1
[settlement]
budget_eth = 0.5
committee = 3
"""


def _signer(cluster: Cluster, i: int) -> Signer:
    d = Path(cluster.nodes[i]["config"]).parent
    return Signer(load_key(d / "key.json", (d / "password.txt").read_text()))


def _wait_done(cluster: Cluster, job_id: str, timeout_s: float) -> bool:
    requester = cluster.client(0)
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end:
            try:
                st = requester.job_status(job_id)
                if st["done"] and st.get("chain", {}).get("state") == "DONE":
                    return True
            except (httpx.HTTPError, Exception):
                pass
            time.sleep(0.5)
        return False
    finally:
        requester.close()


def _report(cluster: Cluster, job_id: str, validator: int = 2) -> dict[str, Any]:
    """Validator ``validator``'s report once it saw every round final (the chain may be
    done a moment before this member's lane read the last round's outcome)."""
    c = cluster.client(validator)
    end = time.monotonic() + 60
    try:
        while True:
            report = c.job_status(job_id)
            phases = [(r.get("settlement") or {}).get("phase") for r in report.get("rounds", [])]
            if (phases and all(p == "final" for p in phases)) or time.monotonic() > end:
                return report
            time.sleep(0.2)
    finally:
        c.close()


def run_jobs(cluster: Cluster, n: int) -> tuple[list[dict[str, Any]], list[float]]:
    signer = _signer(cluster, 0)
    requester = cluster.client(0)
    jobs, latencies = [], []
    for k in range(n):
        job = requester.submit_job(job_text(cluster, f"bench{k}", 1, f"n{k}"), signer)
        done = _wait_done(cluster, job["job_id"], 300)
        report = _report(cluster, job["job_id"])
        for r in report.get("rounds", []):
            s = r.get("settlement") or {}
            if s.get("final_at"):
                latencies.append(float(s["final_at"]) - float(r["started_s"]))
        jobs.append({**job, "done": done, "report": report})
        print(f"job {k}: done={done}", flush=True)
    requester.close()
    return jobs, latencies


def _store_bytes(cluster: Cluster, i: int) -> int:
    root = Path(cluster.nodes[i]["config"]).parent / "data" / "artifacts"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def flood(cluster: Cluster, target: int) -> dict[str, Any]:
    """Strangers try to fill a provider's disk (finding 6 of issue #20)."""
    url, addr = cluster.nodes[target]["url"], cluster.nodes[target]["address"]
    before = _store_bytes(cluster, target)
    codes: dict[str, int] = {}
    big = encode(Update("bench0", 1, "identity", 2_000_000, "float32", b"\0" * 8_000_000, 10))
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
        for k in range(8):
            s = Signer((1000 + k).to_bytes(32, "big"))
            r = c.post("/v1/message", content=big, headers=s.sign(addr, big, 1).headers())
            codes[f"update {r.status_code}"] = codes.get(f"update {r.status_code}", 0) + 1
        blob = os.urandom(7 * MB)
        for k in range(4):
            s = Signer((2000 + k).to_bytes(32, "big"))
            r = c.put("/v1/artifacts", content=blob, headers=s.sign(addr, blob).headers())
            codes[f"put {r.status_code}"] = codes.get(f"put {r.status_code}", 0) + 1
        junk = b"\0" * (8 * MB - 1024)
        for _ in range(16):
            try:
                code = c.post("/v1/message", content=junk).status_code
            except httpx.HTTPError:  # the node answered and closed before the body was sent
                code = 0
            codes[f"unsigned {code}"] = codes.get(f"unsigned {code}", 0) + 1
        healthy = c.get("/v1/health").status_code == 200
    return {
        "unauthenticated_bytes_stored": _store_bytes(cluster, target) - before,
        "flood_answers": codes,
        "flood_health_ok": healthy,
    }


def chain_stall(cluster: Cluster, job_id: str, stall_s: float) -> dict[str, Any]:
    """Stop anvil; probe health while job status requests (chain reads) keep coming."""
    url = cluster.nodes[0]["url"]
    latencies: list[float] = []
    status_answers: dict[int, int] = {}
    stop = threading.Event()

    def status_load() -> None:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            while not stop.is_set():
                try:
                    code = c.get(f"/v1/jobs/{job_id}").status_code
                except httpx.HTTPError:
                    code = 0
                status_answers[code] = status_answers.get(code, 0) + 1
                time.sleep(0.2)

    pid = cluster.state["anvil"]["pid"]
    loader = threading.Thread(target=status_load, daemon=True)
    os.kill(pid, signal.SIGSTOP)
    try:
        loader.start()
        end = time.monotonic() + stall_s
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    ok = c.get("/v1/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000 if ok else 10_000.0)
                time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
        stop.set()
        loader.join(timeout=40)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
    return {
        "health_p99_ms_during_chain_stall": p99,
        "health_probes_during_stall": len(latencies),
        "job_status_answers_during_stall": {str(k): v for k, v in status_answers.items()},
        "chain_stall_s": stall_s,
    }


def coordinator_kill(cluster: Cluster) -> dict[str, Any]:
    """A 3-round job; its coordinator (node 1) SIGKILLed in round 2, then restarted."""
    requester, follower = cluster.client(0), cluster.client(2)
    job = requester.submit_job(job_text(cluster, "kill", 3, "kill"), _signer(cluster, 0))
    end = time.monotonic() + 180
    while time.monotonic() < end:
        st = follower.status()["validator"]["jobs"].get(job["job_id"])
        if st and st["round"] == 2:
            break
        time.sleep(0.05)
    skipper = DeadlineSkipper(cluster, job["chain_job_id"], {cluster.nodes[1]["address"]}, 20.0)
    skipper.start()
    cluster.kill(1)
    cluster.stop_node(1)
    time.sleep(2.0)
    cluster.start_node(1)
    cluster.wait_healthy(300, [1])
    done = _wait_done(cluster, job["job_id"], 400)
    skipper.stop.set()
    report = _report(cluster, job["job_id"])
    requester.close()
    follower.close()
    return {**job, "done": done, "report": report, "skips": skipper.skips}


def cli_status(cluster: Cluster, job_id: str, runs: int) -> dict[str, Any]:
    """``deai job status`` as an operator runs it: a fresh process each time."""
    import resource
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from deai.cli import main; main()", "job", "status", job_id]
    cmd += ["--url", cluster.nodes[0]["url"]]  # as the `deai` script runs it
    times, cpu, codes = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        codes.append(out.returncode)
    return {
        "cli_status_s": statistics.median(times),
        "cli_status_s_ci95": _interval(times),
        "cli_status_runs_s": times,
        # CPU time of the process (user + system): what it costs without the other load
        "cli_status_cpu_s": statistics.median(cpu),
        "cli_status_cpu_s_ci95": _interval(cpu),
        "cli_status_exit_codes": sorted(set(codes)),
    }


def claim_all(cluster: Cluster, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every provider's claim, with the table `deai job claim --url REQUESTER` uses: the
    requester's report of the job (a validator that abstained answers only if no other
    does: its table may differ)."""
    ledger = cluster.ledger()
    claimer = ledger.chain.accounts[0]  # anyone may submit a claim; money goes to the payee
    ok, failures = True, []
    requester = cluster.client(0)
    for job in jobs:
        chain_id = job["chain_job_id"]
        try:
            report = requester.job_status(job["job_id"])
        except Exception as e:  # a failed read is a failed claim
            ok = False
            failures.append(f"job {job['job_id']}: no report: {e}")
            continue
        table = {k: int(v) for k, v in (report.get("payout_table") or {}).items()}
        tree = PayoutTree(chain_id, table)
        payees = [p for p in table if tree.amount(p) > 0]
        try:
            if tree.root != ledger.job(chain_id).root:
                raise RuntimeError("table root differs from the chain's")
            if payees:
                ledger.claim_many(claimer, chain_id, tree, payees)
            for p in payees:
                if ledger.claimed(chain_id, p) != tree.amount(p):
                    raise RuntimeError(f"{p} claimed less than its table amount")
        except Exception as e:  # a failed claim is the measurement
            ok = False
            failures.append(f"job {job['job_id']}: {e}")
    requester.close()
    return {"claims_all_succeeded": ok, "claim_failures": failures}


def _interval(xs: list[float]) -> list[float]:
    if len(xs) < 2:
        return [xs[0], xs[0]] if xs else [math.nan, math.nan]
    from scipy import stats

    m, se = statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs))
    h = float(stats.t.ppf(0.975, len(xs) - 1)) * se
    return [m - h, m + h]


DOC = Path(__file__).parent.parent / "docs" / "deployed.md"


def docs_table(r: dict[str, Any]) -> str:
    """The measured table of docs/deployed.md, from the JSON."""
    lo, hi = r["round_latency_s_ci95"]
    rows = [
        (
            "honest validator slashes (goal 0)",
            f"{r['honest_validator_slashes']}",
            f"over {r['jobs']} jobs, 3 validators, default windows",
        ),
        (
            "rounds settled",
            f"{r['rounds_settled']} / {r['rounds_total']}",
            "every round final on chain",
        ),
        (
            "round latency, open -> final on chain",
            f"{r['round_latency_s']:.2f} s (95 % CI {lo:.2f}-{hi:.2f}; "
            f"median {r['round_latency_s_median']:.2f})",
            f"{len(r['round_latencies_s'])} rounds",
        ),
        (
            "unauthenticated bytes stored (goal 0)",
            f"{r['unauthenticated_bytes_stored']}",
            f"answers: {r['flood_answers']}",
        ),
        (
            "health p99 during a chain stall (goal < 500 ms)",
            f"{r['health_p99_ms_during_chain_stall']:.1f} ms",
            f"anvil stopped {r['chain_stall_s']:.0f} s; {r['health_probes_during_stall']} probes",
        ),
        (
            "coordinator SIGKILL + restart: job completed (goal true)",
            f"{r['coordinator_kill_job_completed']}",
            f"slashed: {len(r['coordinator_kill_slashed'])} (only the crashed one can be); "
            f"windows skipped on anvil: {len(r.get('coordinator_kill_skips', []))}",
        ),
        (
            "every claim succeeded (goal true)",
            f"{r['claims_all_succeeded']}",
            f"{r['jobs'] + 1} jobs claimed; failures: {r['claim_failures'] or 'none'}",
        ),
        (
            "`deai job status` as a fresh process (goal < 1 s)",
            f"median {r['cli_status_s']:.2f} s (mean's 95 % CI {r['cli_status_s_ci95'][0]:.2f}-"
            f"{r['cli_status_s_ci95'][1]:.2f})",
            f"median of {len(r['cli_status_runs_s'])} calls on the loaded 2-core machine; "
            f"CPU time {r['cli_status_cpu_s']:.2f} s (standard library only: argparse, "
            "http.client)",
        ),
    ]
    head = "| measure | value | notes |\n|---|---|---|\n"
    return head + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--stall-s", type=float, default=20.0)
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    parser.add_argument("--keep", type=Path, help="keep the cluster (logs, journals) here")
    parser.add_argument("--docs-only", action="store_true", help="regenerate the doc table")
    args = parser.parse_args()
    if args.docs_only:
        from docs_table import write_block

        write_block(DOC, "deployed_round", docs_table(json.loads(OUT.read_text())))
        return
    t0 = time.perf_counter()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="deai-bench-") as scratch:
        tmp = str(args.keep) if args.keep else scratch
        config = ClusterConfig(
            nodes=6, validators=3, stakes={1: 3 * 10**18}, startup_timeout_s=600.0
        )  # startup: 6 processes importing torch on a shared 2-core machine
        cluster = Cluster.up(Path(tmp) / "cluster", config)
        startup_s = time.perf_counter() - t0
        try:
            jobs, latencies = run_jobs(cluster, args.jobs)
            ledger = cluster.ledger()
            slashes = ledger.events("MemberSlashed")
            flooded = flood(cluster, 4)
            stalled = chain_stall(cluster, jobs[-1]["job_id"], args.stall_s)
            cli = cli_status(cluster, jobs[-1]["job_id"], args.cli_runs)
            killed = coordinator_kill(cluster)
            kill_slashes = [
                str(e.args["member"]) for e in ledger.events("MemberSlashed")[len(slashes) :]
            ]
            claims = claim_all(cluster, [*jobs, killed])
        finally:
            cluster.down()
    rounds = [r for j in jobs for r in j["report"].get("rounds", [])]
    settled = [r for r in rounds if (r.get("settlement") or {}).get("settled")]
    # rounds validator 2 closed at the deadline without some update, and where it abstained
    incomplete = [r for r in rounds if r.get("missing")]
    abstained = [r for r in rounds if (r.get("settlement") or {}).get("abstained")]
    result = {
        "benchmark": "deployed_round",
        "nodes": 6,
        "providers": 2,
        "validators": 3,
        "committee": 3,
        "jobs": len(jobs),
        "windows": "default: commit 3600 s, reveal 3600 s, claim 7 days",
        "honest_validator_slashes": len(slashes),
        "jobs_done": sum(1 for j in jobs if j["done"]),
        "rounds_total": len(rounds),
        "rounds_settled": len(settled),
        "round_latency_s": statistics.fmean(latencies) if latencies else None,
        "round_latency_s_ci95": _interval(latencies),
        "round_latency_s_median": statistics.median(latencies) if latencies else None,
        "round_latencies_s": latencies,
        "incomplete_rounds_seen": len(incomplete),
        "abstained_rounds_seen": len(abstained),
        **flooded,
        **stalled,
        "coordinator_kill_job_completed": bool(killed["done"]),
        "coordinator_kill_slashed": kill_slashes,
        "coordinator_kill_slashed_only_the_killed": set(kill_slashes)
        <= {cluster.nodes[1]["address"]},
        "coordinator_kill_skips": killed["skips"],
        **claims,
        **cli,
        "cluster_startup_s": startup_s,
        "wall_s": time.perf_counter() - t0,
        "model": "mlp hidden=[16] on digits, FedAvg, 1 local epoch, 1 round per job",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "loadavg_start": load_start,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "notes": "loopback HTTP, anvil with a block per transaction; latency = validator "
        "opens the round -> the round is final on chain; a validator that closes a round "
        "incomplete commits at once where its dissent cannot be slashed (1 of 3 seats), "
        "else it abstains if a prompt majority committed; claims use the requester's "
        "report (as `deai job claim --url REQUESTER`); the killed coordinator abstains "
        "from the rounds whose inputs it missed while down (it commits nothing it did not "
        "compute); it can be slashed only for a duty it committed before the crash and "
        "could not reveal in time (coordinator_kill_slashed). Wall times on a 2-core "
        "machine shared with other jobs: pessimistic.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = (
        "honest_validator_slashes", "rounds_settled", "rounds_total", "round_latency_s",
        "unauthenticated_bytes_stored", "health_p99_ms_during_chain_stall",
        "coordinator_kill_job_completed", "claims_all_succeeded", "cli_status_s",
    )  # fmt: skip
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
