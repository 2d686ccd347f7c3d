"""Simulation speed: rounds per second for 10, 100 and 1000 providers, deai vs Flower.

Workload (identical on both): FedAvg, MLP 64-64-10 on scikit-learn's digits, IID split,
one local epoch of SGD (batch 32, lr 0.1) per provider per round, every provider every
round, and an evaluation of the global model on the test split after every round.

Steady-state speed: the first round is excluded on both sides (Flower starts its Ray
actors there; deai builds its nodes), and rounds/s = (R - 1) / (t_R - t_1) from per-round
timestamps. Start-up time is reported separately. Flower runs in its own virtualenv
(``flwr[simulation]`` is a benchmark-only dependency), created on first use:

    python3 -m venv .venv-flower
    .venv-flower/bin/pip install -c constraints.txt torch==2.13.0 \
        "flwr[simulation]==1.41.*" scikit-learn

Usage: ``python benchmarks/sim_speed.py [--sizes 10 100 1000] [--repeats 3]``.
Writes ``benchmarks/results/sim_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=3, help="deai runs per size (median kept)")
    ap.add_argument("--flower-repeats", type=int, default=1)
    ap.add_argument(
        "--docs-only",
        action="store_true",
        help="only re-render the docs table from the existing JSON",
    )
    args = ap.parse_args()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return
    if not FLOWER_PY.exists():
        sys.exit(f"{FLOWER_PY} missing: create the Flower virtualenv first (see module docstring)")
    rounds_deai = {10: 20, 100: 10, 1000: 5}
    rounds_flower = {10: 10, 100: 5, 1000: 3}
    sizes: dict[str, Any] = {}
    for n in args.sizes:
        d = [deai_run(n, rounds_deai.get(n, 5)) for _ in range(args.repeats)]
        f = [flower_run(n, rounds_flower.get(n, 3)) for _ in range(args.flower_repeats)]
        med_d = statistics.median(x["rounds_per_s"] for x in d)
        med_f = statistics.median(x["rounds_per_s"] for x in f)
        sizes[str(n)] = {
            "deai": {"rounds_per_s": med_d, "runs": d},
            "flower": {"rounds_per_s": med_f, "runs": f},
            "speedup": med_d / med_f,
        }
        print(
            f"n={n}: deai {med_d:.2f} rounds/s, flower {med_f:.3f} rounds/s, "
            f"speedup {med_d / med_f:.1f}x",
            flush=True,
        )
    result = {
        "benchmark": "sim_speed",
        "workload": "FedAvg, MLP 64-64-10 on digits, IID, 1 local epoch (batch 32, lr 0.1), "
        "all providers every round, test evaluation every round",
        "measure": "steady-state rounds per second, first round excluded, median over runs",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads_deai": 1,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "flower_version": "1.41 (flwr[simulation], Ray backend, 1 CPU per client actor)",
        "sizes": sizes,
    }
    if "100" in sizes:
        result["speedup_vs_flower_at_100"] = sizes["100"]["speedup"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")
    write_docs(result)


def write_docs(result: dict[str, Any]) -> None:
    from docs_table import write_block

    rows = [
        "| providers | deai rounds/s | Flower rounds/s | speedup | deai runs | Flower runs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in result["sizes"].items():
        rows.append(
            f"| {n} | {r['deai']['rounds_per_s']:.2f} | {r['flower']['rounds_per_s']:.3f} "
            f"| {r['speedup']:.1f}x | {len(r['deai']['runs'])} | {len(r['flower']['runs'])} |"
        )
    rows.append("")
    rows.append(
        f"Measured on {result['machine']['platform']}, torch {result['machine']['torch']}, "
        f"{result['machine']['cpus']} CPUs (deai: 1 torch thread; Flower: one 1-CPU actor per "
        f"core); medians over the runs listed. "
        f"Source: `benchmarks/results/sim_speed.json`."
    )
    write_block(ROOT / "docs" / "learning.md", "sim-speed-table", "\n".join(rows))


if __name__ == "__main__":
    main()
