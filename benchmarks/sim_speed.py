"""Simulation speed: rounds per second for 10, 100 and 1000 providers, deai vs pfl-research
(and Flower); a cross-device run of 100,000 providers in a child process.

Workload (identical on both): FedAvg, MLP 64-64-10 on scikit-learn's digits, IID split,
one local epoch of SGD (batch 32, lr 0.1) per provider per round, every provider every
round, and an evaluation of the global model on the test split after every round.

Steady-state speed: the first round is excluded on every side (Flower starts its Ray
actors there; deai builds its nodes), and rounds/s = (R - 1) / (t_R - t_1) from per-round
timestamps. Start-up time is reported separately. pfl (Apple's simulator built for speed)
and Flower run in their own virtualenvs (benchmark-only dependencies):

    python3 -m venv .venv-pfl
    .venv-pfl/bin/pip install -c constraints.txt torch==2.13.0 "pfl[pytorch]" scikit-learn
    python3 -m venv .venv-flower
    .venv-flower/bin/pip install -c constraints.txt torch==2.13.0 \
        "flwr[simulation]==1.41.*" scikit-learn

deai and pfl run interleaved (deai, pfl, deai, pfl, ...), one torch thread each, so both
see the same machine load; medians of ``--repeats`` runs. The cross-device run (100,000
providers, cohorts of 1,000, 10 rounds, synthetic data) runs in a child process whose
peak RSS is read with ``resource.getrusage(RUSAGE_CHILDREN)``.

Usage: ``python benchmarks/sim_speed.py [--sizes 10 100 1000] [--repeats 3] [--flower]``.
Writes ``benchmarks/results/sim_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deai.sim.runner import run_scenario
from deai.sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
FLOWER_PY = ROOT / ".venv-flower" / "bin" / "python"
PFL_PY = ROOT / ".venv-pfl" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "sim_speed.json"


def deai_run(n: int, rounds: int) -> dict[str, Any]:
    scenario = parse_scenario(
        {
            "name": f"sim-speed-{n}",
            "seed": 0,
            "rounds": rounds,
            "model": {"name": "mlp", "hidden": [64]},
            "algorithm": {"name": "fedavg", "epochs": 1, "batch_size": 32, "lr": 0.1},
            "simulation": {
                "data": {"dataset": "digits", "partition": "iid", "min_examples": 1},
                "nodes": [{"role": "provider", "count": n}, {"role": "validator"}],
            },
        }
    )
    stamps: dict[int, float] = {}
    t0 = time.perf_counter()
    result = run_scenario(scenario, progress=lambda r, _: stamps.setdefault(r, time.perf_counter()))
    total = time.perf_counter() - t0
    steady = (rounds - 1) / (stamps[rounds] - stamps[1])
    return {
        "rounds_per_s": steady,
        "startup_s": stamps[1] - t0,
        "total_s": total,
        "rounds": rounds,
        "final_accuracy": result.metrics["final_accuracy"],
    }


def flower_run(n: int, rounds: int) -> dict[str, Any]:
    proc = subprocess.run(
        [str(FLOWER_PY), str(ROOT / "benchmarks" / "flower_workload.py"), str(n), str(rounds)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    out = {
        k: json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        for k in ("RESULT", "TOTAL")
        if line.startswith(k + " ")
    }
    if "RESULT" not in out:
        raise RuntimeError(f"flower run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    s = out["RESULT"]["stamps"]  # s[0]: initial model, s[r]: after round r
    return {
        "rounds_per_s": (rounds - 1) / (s[rounds] - s[1]),
        "startup_s": s[1] - out["TOTAL"]["start"],
        "total_s": out["TOTAL"]["total_s"],
        "rounds": rounds,
        "final_accuracy": out["RESULT"]["final_accuracy"],
    }


def pfl_run(n: int, rounds: int) -> dict[str, Any]:
    proc = subprocess.run(
        [str(PFL_PY), str(ROOT / "benchmarks" / "pfl_workload.py"), str(n), str(rounds)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"pfl run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line.split(" ", 1)[1])
    s = out["stamps"]  # s[0]: before round 1, s[r]: after round r
    return {
        "rounds_per_s": (rounds - 1) / (s[rounds] - s[1]),
        "startup_s": s[1] - out["start"],
        "total_s": out["total_s"],
        "rounds": rounds,
        "final_accuracy": out["final_accuracy"],
    }


CROSS_DEVICE = {"providers": 100_000, "cohort": 1_000, "rounds": 10, "examples": 5, "features": 16}


def cross_device_scenario(c: dict[str, int]) -> Any:
    n = c["providers"]
    return parse_scenario(
        {
            "name": "cross-device",
            "seed": 0,
            "rounds": c["rounds"],
            "model": {"name": "mlp", "hidden": [64]},
            "algorithm": {"name": "fedavg", "epochs": 1, "batch_size": 32, "lr": 0.1},
            "simulation": {
                "cohort": c["cohort"],
                "data": {
                    "dataset": "synthetic",
                    "n_samples": c["examples"] * n,
                    "n_features": c["features"],
                    "n_classes": 10,
                    "partition": "iid",
                    "min_examples": 1,
                },
                "nodes": [{"role": "provider", "count": n}, {"role": "validator"}],
            },
        }
    )


def cross_device_child() -> None:
    """Inside the child: run the cross-device scenario, print its timings."""
    t0 = time.perf_counter()
    stamps: dict[int, float] = {}
    result = run_scenario(
        cross_device_scenario(CROSS_DEVICE),
        progress=lambda r, _: stamps.setdefault(r, time.perf_counter()),
    )
    m = result.metrics
    out = {
        "in_process_s": time.perf_counter() - t0,
        "startup_s": stamps[1] - t0,
        "rounds_s": stamps[CROSS_DEVICE["rounds"]] - stamps[1],
        "final_accuracy": m["final_accuracy"],
        "providers_built": m["providers_built"],
        "accepted_per_round": [r["accepted"] for r in m["rounds"]],
        "messages": m["messages"],
        "total_bytes": m["total_bytes"],
    }
    print("RESULT " + json.dumps(out), flush=True)


def cross_device_measure() -> None:
    """One child, alone: its peak RSS is this process's RUSAGE_CHILDREN maximum."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--cross-device-child"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"cross-device run failed:\n{proc.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    out = json.loads(line.split(" ", 1)[1])
    print("MEASURED " + json.dumps({"wall_s": wall, "peak_rss_gb": peak_kb / 2**20, **out}))


def cross_device() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--cross-device-measure"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("MEASURED ")), None)
    if line is None:
        raise RuntimeError(f"cross-device measurement failed:\n{proc.stderr[-3000:]}")
    got: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return {
        **CROSS_DEVICE,
        **got,
        "goal": {"peak_rss_gb": 2.0, "wall_s": 60.0},
        "measure": "wall_s: the child process from start to exit (interpreter, imports, data "
        "generation, 10 rounds); peak_rss_gb: getrusage(RUSAGE_CHILDREN).ru_maxrss of a "
        "process whose only child is the run",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=3, help="runs per size and side (median)")
    ap.add_argument("--flower", action="store_true", help="rerun Flower (else kept)")
    ap.add_argument("--flower-repeats", type=int, default=1)
    ap.add_argument("--no-cross-device", action="store_true")
    ap.add_argument("--cross-device-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cross-device-measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--docs-only",
        action="store_true",
        help="only re-render the docs table from the existing JSON",
    )
    args = ap.parse_args()
    if args.cross_device_child:
        return cross_device_child()
    if args.cross_device_measure:
        return cross_device_measure()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return
    if not PFL_PY.exists():
        sys.exit(f"{PFL_PY} missing: create the pfl virtualenv first (see module docstring)")
    if args.flower and not FLOWER_PY.exists():
        sys.exit(f"{FLOWER_PY} missing: create the Flower virtualenv first (see docstring)")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    rounds_deai = {10: 20, 100: 10, 1000: 5}
    rounds_pfl = {10: 20, 100: 10, 1000: 5}
    rounds_flower = {10: 10, 100: 5, 1000: 3}
    sizes: dict[str, Any] = {}
    loads: dict[str, list[float]] = {}  # the 1-minute load average before each size
    for n in args.sizes:
        loads[str(n)] = [round(x, 2) for x in os.getloadavg()]
        d: list[dict[str, Any]] = []
        p: list[dict[str, Any]] = []
        for _ in range(args.repeats):  # interleaved: the same load on both
            d.append(deai_run(n, rounds_deai.get(n, 5)))
            p.append(pfl_run(n, rounds_pfl.get(n, 5)))
        med_d = statistics.median(x["rounds_per_s"] for x in d)
        med_p = statistics.median(x["rounds_per_s"] for x in p)
        entry: dict[str, Any] = {
            "deai": {"rounds_per_s": med_d, "runs": d},
            "pfl": {"rounds_per_s": med_p, "runs": p},
            "speedup_vs_pfl": med_d / med_p,
        }
        if args.flower:
            f = [flower_run(n, rounds_flower.get(n, 3)) for _ in range(args.flower_repeats)]
            med_f = statistics.median(x["rounds_per_s"] for x in f)
            entry["flower"] = {"rounds_per_s": med_f, "runs": f}
            entry["speedup_vs_flower"] = med_d / med_f
        sizes[str(n)] = entry
        print(
            f"n={n}: deai {med_d:.2f} rounds/s, pfl {med_p:.2f}, {med_d / med_p:.2f}x", flush=True
        )
    result: dict[str, Any] = {
        "benchmark": "sim_speed",
        "workload": "FedAvg, MLP 64-64-10 on digits, IID, 1 local epoch (batch 32, lr 0.1), "
        "all providers every round, test evaluation every round",
        "measure": "steady-state rounds per second, first round excluded, median over runs",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": 1,
            "load_average_at_start": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "meta": {
            "interleaved": "deai and pfl alternate run by run on the same machine under the "
            "same load (shared by other jobs: see load_average_at_start); medians of "
            f"{args.repeats} runs per side",
            "pfl": "pfl-research 0.6.0 (PyTorch), SimulatedBackend in one process on CPU, "
            "in-memory FederatedDataset.from_slices, cohort = every user, central "
            "evaluation every round (benchmarks/pfl_workload.py)",
            "load_average_before_size": loads,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "allocator": "deai's runner raises glibc's mmap and trim thresholds while a "
            "simulation runs (deai.sim.heap); pfl runs with the allocator's defaults",
        },
        "flower_version": "1.41 (flwr[simulation], Ray backend, 1 CPU per client actor)",
        "sizes": sizes,
    }
    for n in ("100", "1000"):
        if n in sizes:
            result[f"speedup_vs_pfl_at_{n}"] = sizes[n]["speedup_vs_pfl"]
    if "100" in sizes and "flower" in sizes["100"]:
        result["speedup_vs_flower_at_100"] = sizes["100"]["speedup_vs_flower"]
    elif "speedup_vs_flower_at_100" in old:
        result["speedup_vs_flower_at_100"] = old["speedup_vs_flower_at_100"]
        result["meta"]["flower"] = (
            "speedup_vs_flower_at_100 and flower_runs are kept from the earlier run (deai "
            "before this round of speed work against Flower 1.41); Flower was not rerun"
        )
        result["flower_runs"] = old.get("flower_runs") or {
            k: v["flower"] for k, v in old.get("sizes", {}).items() if "flower" in v
        }
    if not args.no_cross_device:
        result["cross_device_100k"] = cross_device()
        print(f"cross-device: {result['cross_device_100k']}", flush=True)
    elif "cross_device_100k" in old:
        result["cross_device_100k"] = old["cross_device_100k"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")
    write_docs(result)


def write_docs(result: dict[str, Any]) -> None:
    from docs_table import write_block

    rows = [
        "| providers | deai rounds/s | pfl rounds/s | deai / pfl | runs each |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, r in result["sizes"].items():
        rows.append(
            f"| {n} | {r['deai']['rounds_per_s']:.2f} | {r['pfl']['rounds_per_s']:.2f} "
            f"| {r['speedup_vs_pfl']:.2f}x | {len(r['deai']['runs'])} |"
        )
    rows.append("")
    if "speedup_vs_flower_at_100" in result:
        rows.append(
            f"Against Flower 1.41 (Ray backend) at 100 providers: "
            f"{result['speedup_vs_flower_at_100']:.1f}x"
            + (" (kept from an earlier run)." if "flower" in result.get("meta", {}) else ".")
        )
        rows.append("")
    cd = result.get("cross_device_100k")
    if cd:
        rows.append(
            f"Cross-device: {cd['providers']:,} providers, cohorts of {cd['cohort']:,}, "
            f"{cd['rounds']} rounds: peak RSS {cd['peak_rss_gb']:.2f} GB, "
            f"{cd['wall_s']:.1f} s wall for the whole child process "
            f"({cd['providers_built']:,} providers ever built)."
        )
        rows.append("")
    m = result["machine"]
    rows.append(
        f"Measured on {m['platform']}, torch {m['torch']}, {m['cpus']} CPUs, one torch "
        f"thread each, deai and pfl interleaved (load average at start "
        f"{m.get('load_average_at_start', ['?'])[0]:.1f}); medians over the runs listed. "
        f"Source: `benchmarks/results/sim_speed.json`."
    )
    write_block(ROOT / "docs" / "learning.md", "sim-speed-table", "\n".join(rows))


if __name__ == "__main__":
    main()
