"""The default rule with and without spectral (DnC) exclusion stages against the backdoor
-> benchmarks/results/robustness_spectral.json.

    .venv/bin/python benchmarks/robustness_spectral.py [--seeds 3] [--rounds 60] [--jobs 2]
    .venv/bin/python benchmarks/robustness_spectral.py --render-only   # rewrite the docs

The workload, the attacks, the seeds and the scenarios are those of
``benchmarks/robustness.py`` (issue 16), run through the same roles
(``deai.sim.runner.run_scenario``); only the default rule's ``spectral`` parameter changes
(``deai.aggregation.default``: Divide and Conquer, Shejwalkar & Houmansadr, NDSS 2021, in
stages). Each variant gets the cells that decide whether it could replace the default:
no attack at every alpha (the no-attack cost and the share of honest provider-rounds the
rule excludes), the backdoor in every corner at 20 % and top-left at every other share and
alpha, and the attacks the default is weakest against (adaptive, ALIE, min-max, the mix).
Clean FedAvg is rerun here at every alpha (the baseline of every drop). Intervals are 95 %
Student-t over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import robustness as R  # the sibling benchmark: the same workload and scenarios

RESULTS = R.ROOT / "benchmarks" / "results" / "robustness_spectral.json"
START, END = "<!-- robustness-spectral:start -->", "<!-- robustness-spectral:end -->"

# variant -> the default rule's `spectral` stages (fraction of the live rows, scale)
VARIANTS: dict[str, list[list[float | None]]] = {
    "default": [],
    "dnc_0.2": [[0.2, None]],
    "scaled_0.1": [[0.1, 0.1]],
    "scaled_0.2": [[0.2, 0.1]],
    "dnc_0.1+scaled_0.1": [[0.1, None], [0.1, 0.1]],
}
CELLS: tuple[tuple[str, int, str], ...] = (
    *((a, 0, R.NO_ATTACK) for a in R.ALPHAS),
    *(("0.5", 20, b) for b in R.BACKDOORS),
    ("0.5", 10, "backdoor_top_left"),
    ("0.1", 20, "backdoor_top_left"),
    ("iid", 20, "backdoor_top_left"),
    ("0.5", 30, "backdoor_top_left"),
    ("0.5", 40, "backdoor_top_left"),
    ("0.5", 20, "adaptive"),
    ("0.1", 20, "adaptive"),
    ("0.5", 40, "adaptive"),
    ("0.5", 20, "alie"),
    ("0.5", 20, "mix"),
    ("0.5", 20, "min_max_unit_vector"),
    ("0.5", 20, "label_flip"),
)


def run_one(job: tuple[str, str, int, str, int, int]) -> dict[str, Any]:
    """One scenario of the matrix with the variant's stages; ``variant`` is ``mean`` for
    clean FedAvg."""
    from deai.sim.runner import run_scenario
    from deai.sim.scenario import parse_scenario

    variant, alpha, share, setting, seed, rounds = job
    rule = R.FEDAVG if variant == R.FEDAVG else R.DEFAULT
    t0 = time.perf_counter()
    scenario = R.scenario_dict(R.RunKey(alpha, share, setting, rule, seed), rounds)
    if rule == R.DEFAULT:  # the row stages alone: the validator's sentinel off (it was
        # added after this matrix; robustness.py measures the default with it)
        scenario["aggregation"]["spectral"] = VARIANTS[variant]
        scenario["aggregation"]["sentinel"] = False
    m = run_scenario(parse_scenario(scenario)).metrics
    rs = m["rounds"]
    return {
        "alpha": alpha,
        "share": share,
        "setting": setting,
        "aggregator": variant,
        "seed": seed,
        "final_accuracy": m["final_accuracy"],
        "backdoor_success": m.get("backdoor_success"),
        "excluded_per_round": [len(r.get("excluded", [])) for r in rs],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def jobs(seeds: int, rounds: int) -> list[tuple[str, str, int, str, int, int]]:
    out = [(R.FEDAVG, a, 0, R.NO_ATTACK, s, rounds) for s in range(seeds) for a in R.ALPHAS]
    out += [
        (v, a, sh, st, s, rounds) for s in range(seeds) for v in VARIANTS for a, sh, st in CELLS
    ]
    return out


def variant_headline(
    c: dict[R.CellKey, dict[str, Any]], runs: list[dict[str, Any]], v: str
) -> dict[str, Any]:
    """The issue's headline figures for one variant, and its honest exclusion rate."""
    d = R.vs_clean_fedavg(c, v)
    upto20 = {k: x for k, x in d.items() if int(k.split("/")[1]) <= 20}
    no_attack = {k.split("/")[0]: x for k, x in d.items() if k.endswith(f"/0/{R.NO_ATTACK}")}
    bd = {
        f"{a}/{sh}/{s}": cell["backdoor_success"]["mean"]
        for (a, sh, s, g), cell in c.items()
        if g == v and s in R.BACKDOORS and "backdoor_success" in cell
    }
    bd20 = {k: x for k, x in bd.items() if int(k.split("/")[1]) <= 20}
    adaptive = {k: x for k, x in upto20.items() if k.endswith("/adaptive")}
    excl = [
        statistics.fmean(r["excluded_per_round"]) / R.N_PROVIDERS
        for r in runs
        if r["aggregator"] == v and r["setting"] == R.NO_ATTACK
    ]
    worst = max(upto20, key=lambda k: upto20[k]) if upto20 else None
    return {
        "backdoor_success_default_max": max(bd20.values()) if bd20 else None,
        "backdoor_success_default_max_all_shares": max(bd.values()) if bd else None,
        "backdoor_success_default": bd,
        "no_attack_cost_default_max": max(no_attack.values()) if no_attack else None,
        "no_attack_cost_default": no_attack,
        "worst_accuracy_drop_default_vs_clean_fedavg": upto20.get(worst) if worst else None,
        "worst_cell_default": worst,
        "adaptive_attack_drop_default": max(adaptive.values()) if adaptive else None,
        "honest_provider_rounds_excluded_no_attack": R.interval(excl) if excl else None,
        "accuracy_drop_vs_clean_fedavg": d,
    }


def build(runs: list[dict[str, Any]], seeds: int, rounds: int, done: bool) -> dict[str, Any]:
    c = R.cells(runs)
    heads = {v: variant_headline(c, runs, v) for v in VARIANTS}
    goals = {
        v: {
            "backdoor_at_most_5pct_upto_20pct": h["backdoor_success_default_max"] is not None
            and h["backdoor_success_default_max"] <= R.GOAL_BACKDOOR,
            "no_attack_cost_at_most_2_points": h["no_attack_cost_default_max"] is not None
            and h["no_attack_cost_default_max"] <= R.GOAL_NO_ATTACK,
            "worst_drop_at_most_3_points": h["worst_accuracy_drop_default_vs_clean_fedavg"]
            is not None
            and h["worst_accuracy_drop_default_vs_clean_fedavg"] <= R.GOAL_DROP,
        }
        for v, h in heads.items()
    }
    return {
        "benchmark": "robustness_spectral",
        "complete": done,
        "settings": {
            "rounds": rounds,
            "seeds": seeds,
            "variants": VARIANTS,
            "cells": [list(k) for k in CELLS],
            "workload": "benchmarks/robustness.py (digits, MLP(64), FedAvgM, 50 providers)",
        },
        "variants": heads,
        "goal_met": goals,
        "cells": [
            {"alpha": k[0], "share": k[1], "setting": k[2], "aggregator": k[3], **x}
            for k, x in sorted(c.items())
        ],
        "runs": sorted(
            runs, key=lambda r: (r["aggregator"], r["alpha"], r["share"], r["setting"], r["seed"])
        ),
    }


def _pct(s: dict[str, Any] | None) -> str:
    return "" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['ci95']:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    c = R.cells(doc["runs"])
    heads, goals = doc["variants"], doc["goal_met"]
    s = doc["settings"]
    yes = {True: "met", False: "**not met**"}
    out = [
        START,
        "",
        f"Generated from `benchmarks/results/robustness_spectral.json` ({s['seeds']} seeds, "
        f"{s['rounds']} rounds; 95 % intervals over seeds). `spectral` stages are "
        "(share of the live rows excluded, coordinate scale); drops are points against "
        "clean FedAvg at the same α. The rows' stages alone: every variant runs with the "
        "validator's backdoor sentinel off (`sentinel = false`), so `default` here is the "
        "default rule without it.",
        "",
        "| variant | `spectral` | backdoor max ≤ 20 % | backdoor max, all shares | "
        "no-attack cost max | worst drop ≤ 20 % | adaptive drop | honest provider-rounds "
        "excluded (no attack) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, h in heads.items():
        g = goals[v]
        out.append(
            f"| {v} | `{json.dumps(s['variants'][v])}` | "
            f"{100 * h['backdoor_success_default_max']:.1f} % "
            f"({yes[g['backdoor_at_most_5pct_upto_20pct']]}) | "
            f"{100 * h['backdoor_success_default_max_all_shares']:.1f} % | "
            f"{h['no_attack_cost_default_max']:.2f} "
            f"({yes[g['no_attack_cost_at_most_2_points']]}) | "
            f"{h['worst_accuracy_drop_default_vs_clean_fedavg']:.2f} "
            f"(`{h['worst_cell_default']}`) | {h['adaptive_attack_drop_default']:.2f} | "
            f"{_pct(h['honest_provider_rounds_excluded_no_attack'])} % |"
        )
    out += [
        "",
        "Accuracy in % (backdoor success in %) per cell:",
        "",
        "| α / share / setting | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
    ]
    for a, sh, st in [tuple(k) for k in s["cells"]]:
        row = [R._acc_cell(c.get((a, sh, st, v))) for v in heads]
        out.append(f"| {a} / {sh} / {st} | " + " | ".join(row) + " |")
    fed = [R._acc_cell(c.get((a, 0, R.NO_ATTACK, R.FEDAVG))) for a in R.ALPHAS]
    out += [
        "",
        "Clean FedAvg: " + ", ".join(f"α {a}: {x}" for a, x in zip(R.ALPHAS, fed, strict=True)),
        "",
    ]
    out.append(END)
    return "\n".join(out)


def write_docs(doc: dict[str, Any], path: Path = R.DOC) -> None:
    R.write_between(path, START, END, markdown(doc))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2 here)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--render-only", action="store_true", help="rewrite the docs from --out")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args()
    if args.render_only:
        write_docs(json.loads(args.out.read_text()))
        return
    todo = jobs(args.seeds, args.rounds)
    print(f"{len(todo)} runs, {args.jobs} workers -> {args.out}", flush=True)
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, rec in enumerate(R.run_pool(run_one, todo, max(1, args.jobs)), 1):
        runs.append(rec)
        bd = rec["backdoor_success"]
        print(
            f"[{i}/{len(todo)} {time.perf_counter() - t0:5.0f}s] {rec['aggregator']} "
            f"{rec['alpha']}/{rec['share']}/{rec['setting']}/{rec['seed']}: "
            f"{rec['final_accuracy']:.3f}" + ("" if bd is None else f" backdoor {bd:.3f}"),
            flush=True,
        )
    doc = build(runs, args.seeds, args.rounds, done=len(runs) == len(todo))
    R.dump(args.out, doc)
    skip = ("accuracy_drop_vs_clean_fedavg", "backdoor_success_default")
    brief = {v: {k: x for k, x in h.items() if k not in skip} for v, h in doc["variants"].items()}
    print(json.dumps(brief, indent=1))
    if not args.no_docs:
        write_docs(doc)


if __name__ == "__main__":
    main()
