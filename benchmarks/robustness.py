"""Robustness under heterogeneity and adaptive attacks -> benchmarks/results/robustness.json.

    .venv/bin/python benchmarks/robustness.py [--seeds 3] [--rounds 60] [--jobs 2]
                                              [--budget-s 2700] [--resume]
    .venv/bin/python benchmarks/robustness.py --render-only   # rewrite the docs tables

Workload (issue 16): scikit-learn's digits, MLP(64), FedAvgM (5 local epochs, batch 16,
SGD lr 0.1 with momentum 0.9; server step 0.5 with momentum 0.9), 60 rounds, 50 providers,
one validator, label skew Dirichlet(alpha) for alpha in {0.05, 0.1, 0.5} or an IID split.
Attackers are a share of the 50 providers (10, 20, 30 or 40%); they are omniscient and
collude (``deai.sim.adversary``: they see every honest update of the round). Rules that
take ``f`` (Krum, Multi-Krum, trimmed mean, Bulyan) get the declared attacker count; their
no-attack run uses the 20% setting's ``f`` (the rule is configured before anyone knows
whether an attack comes). The default rule takes no ``f``: it trims a fixed share.

Attack settings (``SETTINGS``): label flipping, ALIE, IPM, the backdoor with its trigger
in each of the four corners (boosted model replacement; the success metric stamps the
attackers' own corner), min-max in every perturbation direction (inverse unit vector,
inverse standard deviation, inverse sign), min-sum in every direction with the project's
bound (largest honest sum of squared distances) and with the authors' (smallest), an
adaptive attack that runs the job's own rule and picks its scale against it
(``deai.attacks.byzantine.adaptive``), zero and noise free-riders, and a mix (ALIE, label
flipping, noise free-riders in thirds).

The device budget here is two CPU cores shared by five engineers, so the grid is run in
priority order (``plan``) under a wall-clock budget (``--budget-s``): first every seed of
the cells the headline needs (no attack for FedAvg and the default at every alpha; the
default under every attack at 20%, alpha = 0.5), then the default at 40%, other alphas and
shares, then every other rule. Cells that the budget cut are absent or have fewer seeds;
``cells[].n`` has the count and the docs mark single-seed cells. Wall times under this
load are pessimistic.

Central training (the same MLP on the whole training split, 60 epochs) is measured per
seed: ``clean_fedavg_gap_to_central_points`` says how far from converged the clean FedAvg
baseline is. Intervals are 95% Student-t intervals over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"
DOC = ROOT / "docs" / "robustness.md"
START, END = "<!-- robustness-table:start -->", "<!-- robustness-table:end -->"
T = TypeVar("T")

N_PROVIDERS = 50
ALPHAS = ("0.05", "0.1", "0.5", "iid")  # Dirichlet label skew, or an IID split
ATTACK_ALPHA = "0.5"  # the alpha of the full attack matrix
SHARES = (10, 20, 30, 40)  # attacker share of the providers, in percent
NO_ATTACK = "none"
DEFAULT = "default"
FEDAVG = "mean"
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}
GOAL_DROP = 3.0  # points, every cell at <= 20% attackers, against clean FedAvg
GOAL_NO_ATTACK = 2.0  # points, the default without attack against FedAvg, every alpha
GOAL_BACKDOOR = 0.05
RUNS_PER_WORKER = 8  # a worker process is replaced after this many runs
GOAL_CENTRAL = 1.0  # clean FedAvg within this many points of central training
# local heavy-ball momentum and server momentum (FedAvgM, Hsu et al. 2019): with plain SGD
# (lr 0.1, no momentum) clean FedAvg plateaued 6.2 points under central training at 20
# rounds and ~7 at 60; with these it is within 0.6-2.5 points at 40 rounds (seeds 0-2,
# mean 1.4) and 0.3-1.4 at 60 (mean 0.75), so the benchmark runs 60
TRAINING: dict[str, Any] = {
    "name": "fedavg",
    "epochs": 5,
    "batch_size": 16,
    "lr": 0.1,
    "momentum": 0.9,
    "server_momentum": 0.9,
    "server_lr": 0.5,
}
MODEL: dict[str, Any] = {"name": "mlp", "hidden": [64]}

# setting -> groups of (share of the attackers, attack, its parameters)
Group = tuple[float, str, dict[str, Any]]
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
DIRECTIONS = ("unit_vector", "std", "sign")
SETTINGS: dict[str, list[Group]] = {
    NO_ATTACK: [],
    "label_flip": [(1.0, "label_flip", {})],
    "alie": [(1.0, "alie", {})],
    "ipm": [(1.0, "ipm", {})],
    **{f"backdoor_{c}": [(1.0, "backdoor", {"corner": c})] for c in CORNERS},
    **{f"min_max_{p}": [(1.0, "min_max", {"perturbation": p})] for p in DIRECTIONS},
    **{
        f"min_sum_{p}_{b}": [(1.0, "min_sum", {"perturbation": p, "bound": b})]
        for p in DIRECTIONS
        for b in ("largest", "smallest")
    },
    "adaptive": [(1.0, "adaptive", {})],
    "free_rider_zero": [(1.0, "free_rider_zero", {})],
    "free_rider_noise": [(1.0, "free_rider_noise", {})],
    "mix": [
        (1 / 3, "alie", {}),
        (1 / 3, "label_flip", {}),
        (1 / 3, "free_rider_noise", {}),
    ],
}
BACKDOORS = tuple(s for s in SETTINGS if s.startswith("backdoor_"))
AGGREGATORS = (
    FEDAVG,
    "krum",
    "multi_krum",
    "median",
    "trimmed_mean",
    "geometric_median",
    "bulyan",
    "centered_clipping",
    "norm_bounding",
    "fltrust",
    "foolsgold",
    DEFAULT,
)
USES_F = frozenset({"krum", "multi_krum", "trimmed_mean", "bulyan"})
# the settings run for every other rule (seed 0 first), at 20%, alpha = 0.5
OTHER_RULE_SETTINGS = (
    NO_ATTACK,
    "alie",
    "label_flip",
    "backdoor_bottom_right",
    "min_max_unit_vector",
    "min_sum_unit_vector_largest",
    "adaptive",
    "mix",
)


@dataclass(frozen=True)
class RunKey:
    """One cell of the matrix and one seed."""

    alpha: str
    share: int  # attacker share in percent (0 for the no-attack setting)
    setting: str
    aggregator: str
    seed: int

    @property
    def tag(self) -> str:
        return f"a={self.alpha}/{self.share}%/{self.setting}/{self.aggregator}/{self.seed}"


def groups_for(share: int, setting: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Attacker groups ``(count, attack, params)``; counts add up to ``share`` of n."""
    total = N_PROVIDERS * share // 100
    groups = SETTINGS[setting]
    out, left = [], total
    for i, (frac, attack, params) in enumerate(groups):
        k = left if i == len(groups) - 1 else round(frac * total)
        left -= k
        if k:
            out.append((k, attack, params))
    return out


def scenario_dict(key: RunKey, rounds: int) -> dict[str, Any]:
    """The scenario of one run (deai.sim.scenario schema)."""
    bad = groups_for(key.share, key.setting)
    honest = N_PROVIDERS - sum(k for k, _, _ in bad)
    nodes: list[dict[str, Any]] = [{"role": "provider", "count": honest}]
    for k, attack, params in bad:
        node: dict[str, Any] = {"role": "provider", "count": k, "attack": attack}
        if params:
            node["attack_params"] = params
        nodes.append(node)
    nodes.append({"role": "validator", "count": 1})
    aggregation: dict[str, Any] = {"rule": key.aggregator}
    if key.aggregator in USES_F:
        aggregation["f"] = N_PROVIDERS * (key.share or 20) // 100
    data: dict[str, Any] = (
        {"dataset": "digits", "partition": "iid"}
        if key.alpha == "iid"
        else {"dataset": "digits", "partition": "dirichlet", "alpha": float(key.alpha)}
    )
    return {
        "name": f"robust-{key.alpha}-{key.share}-{key.setting}-{key.aggregator}",
        "seed": key.seed,
        "rounds": rounds,
        "aggregation": aggregation,
        "model": MODEL,
        "algorithm": TRAINING,
        "simulation": {"data": data, "nodes": nodes},
    }


def central_accuracy(seed: int) -> float:
    """The same MLP trained centrally on the whole training split (60 epochs, batch 32,
    SGD lr 0.1 with momentum 0.9), the benchmark's reference of a converged model."""
    from deai.learning.data import DatasetName, load_dataset
    from deai.learning.models import ModelConfig, build_model
    from deai.learning.params import FlatModel
    from deai.learning.train import LocalTrainConfig, TrainRequest, evaluate, train_local

    splits = load_dataset(DatasetName.DIGITS, seed=seed)
    flat = FlatModel(build_model(ModelConfig("mlp", {"hidden": [64]}), (1, 8, 8), 10, seed))
    cfg = LocalTrainConfig(epochs=60, batch_size=32, lr=0.1, momentum=0.9)
    req = TrainRequest(flat.initial_vector(), splits.train.x, splits.train.y, cfg, seed)
    return float(evaluate(flat, train_local(flat, [req])[0].params, splits.test)[1])


def run_one(key: RunKey, rounds: int) -> dict[str, Any]:
    """Run one scenario in this process and keep the metrics the matrix needs."""
    from deai.errors import DeaiError
    from deai.sim.runner import run_scenario
    from deai.sim.scenario import parse_scenario

    t0 = time.perf_counter()
    record: dict[str, Any] = asdict(key)
    try:
        m = run_scenario(parse_scenario(scenario_dict(key, rounds))).metrics
    except DeaiError as e:  # a rule whose preconditions do not hold (Bulyan's n >= 4f + 3)
        record.update(error=f"{type(e).__name__}: {e}", wall_s=round(time.perf_counter() - t0, 2))
        return record
    rs = m["rounds"]
    record.update(
        final_accuracy=m["final_accuracy"],
        backdoor_success=m.get("backdoor_success"),
        accuracy_per_round=[round(r["accuracy"], 4) for r in rs],
        excluded_per_round=[len(r.get("excluded", [])) for r in rs],
        wall_s=round(time.perf_counter() - t0, 2),
    )
    return record


def _worker_init() -> None:
    torch.set_num_threads(1)


# the settings whose every seed comes right after seed 0 of the whole 20% row
HEADLINE_SETTINGS = (
    "adaptive",
    "backdoor_top_left",
    "backdoor_bottom_right",
    "mix",
    "alie",
    "min_max_unit_vector",
    "min_sum_unit_vector_largest",
)


def plan(seeds: int) -> list[RunKey]:
    """Runs in priority order, so a budget cut keeps the headline's cells:

    0. no attack, FedAvg and the default, every alpha, every seed;
    1. the default under every setting at 20%, alpha 0.5, seed 0 (headline settings first);
    2. the other seeds of the headline settings;
    3. the other seeds of the remaining 20% settings;
    4. the default at 40%, 10% and 30% on the strongest settings;
    5. the default at 20% under attack at alpha 0.1 and IID;
    6. every other rule (seed by seed) on ``OTHER_RULE_SETTINGS``.
    """
    stages: list[list[RunKey]] = [[] for _ in range(7)]
    attacks = [*HEADLINE_SETTINGS] + [
        st for st in SETTINGS if st != NO_ATTACK and st not in HEADLINE_SETTINGS
    ]
    for seed in range(seeds):
        stages[0] += [RunKey(a, 0, NO_ATTACK, g, seed) for a in ALPHAS for g in (FEDAVG, DEFAULT)]
        for st in attacks:
            key = RunKey(ATTACK_ALPHA, 20, st, DEFAULT, seed)
            stages[1 if seed == 0 else 2 if st in HEADLINE_SETTINGS else 3].append(key)
        for share in (40, 10, 30):
            stages[4] += [
                RunKey(ATTACK_ALPHA, share, st, DEFAULT, seed)
                for st in ("alie", "adaptive", "min_max_unit_vector", "backdoor_top_left", "mix")
            ]
        for a in ("0.1", "iid"):
            stages[5] += [
                RunKey(a, 20, st, DEFAULT, seed)
                for st in ("alie", "adaptive", "backdoor_top_left", "label_flip", "mix")
            ]
        for g in AGGREGATORS:
            if g != DEFAULT:
                stages[6] += [
                    RunKey(ATTACK_ALPHA, 0 if st == NO_ATTACK else 20, st, g, seed)
                    for st in OTHER_RULE_SETTINGS
                    if not (g == FEDAVG and st == NO_ATTACK)
                ]
    seen: set[RunKey] = set()
    out: list[RunKey] = []
    for stage in stages:
        for k in stage:
            if k not in seen:
                seen.add(k)
                out.append(k)
    return out


def run_pool(
    fn: Callable[[T], dict[str, Any]], items: Iterable[T], jobs: int, deadline: float = math.inf
) -> Iterator[dict[str, Any]]:
    """``fn`` over ``items`` in order of completion, at most ``jobs`` in flight (in this
    process when ``jobs <= 1``); no new item starts after ``deadline`` (perf_counter)."""
    if jobs <= 1:
        _worker_init()
        for item in items:
            if time.perf_counter() >= deadline:
                return
            yield fn(item)
        return
    # fresh workers every few runs: a worker's memory grew to 9-11 GB over ~180 runs
    # (the machine has 24 GB) and the run stalled in swap; a bounded number in flight, since
    # `map` with worker replacement hangs (CPython 3.11)
    with ProcessPoolExecutor(
        max_workers=jobs,
        initializer=_worker_init,
        mp_context=multiprocessing.get_context("forkserver"),
        max_tasks_per_child=RUNS_PER_WORKER,
    ) as pool:
        todo = iter(items)
        running: set[Future[dict[str, Any]]] = set()
        for item in todo:
            running.add(pool.submit(fn, item))
            if len(running) >= jobs:
                break
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(todo, None) if time.perf_counter() < deadline else None
                if nxt is not None:
                    running.add(pool.submit(fn, nxt))


def execute(
    keys: list[RunKey], rounds: int, jobs: int, deadline: float
) -> Iterator[dict[str, Any]]:
    """Run the keys in order; no new run starts after ``deadline`` (perf_counter)."""
    return run_pool(partial(run_one, rounds=rounds), keys, jobs, deadline)


# ---------------------------------------------------------------- summary


def interval(xs: list[float]) -> dict[str, float | int]:
    """Mean and the half-width of the 95% Student-t interval (0 for one value)."""
    m = statistics.fmean(xs)
    n = len(xs)
    h = T95.get(n - 1, 1.96) * statistics.stdev(xs) / math.sqrt(n) if n > 1 else 0.0
    return {"mean": m, "ci95": h, "n": n}


CellKey = tuple[str, int, str, str]  # alpha, share, setting, aggregator


def cells(runs: list[dict[str, Any]]) -> dict[CellKey, dict[str, Any]]:
    groups: dict[CellKey, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["alpha"], r["share"], r["setting"], r["aggregator"]), []).append(r)
    out: dict[CellKey, dict[str, Any]] = {}
    for k, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        cell: dict[str, Any] = {"seeds": len(rs)}
        if len(ok) < len(rs):
            cell["error"] = next(r["error"] for r in rs if "error" in r)
        if ok:
            cell["accuracy"] = interval([r["final_accuracy"] for r in ok])
            bd = [r["backdoor_success"] for r in ok if r.get("backdoor_success") is not None]
            if bd:
                cell["backdoor_success"] = interval(bd)
        out[k] = cell
    return out


def _acc(c: dict[CellKey, dict[str, Any]], k: CellKey) -> float | None:
    cell = c.get(k)
    return cell["accuracy"]["mean"] if cell and "accuracy" in cell else None


def vs_clean_fedavg(c: dict[CellKey, dict[str, Any]], agg: str) -> dict[str, float]:
    """Points the rule loses in each measured cell against FedAvg without attack at the
    same alpha; keys ``alpha/share/setting``."""
    out: dict[str, float] = {}
    for (alpha, share, setting, g), _cell in sorted(c.items()):
        base, acc = _acc(c, (alpha, 0, NO_ATTACK, FEDAVG)), _acc(c, (alpha, share, setting, g))
        if g == agg and base is not None and acc is not None:
            out[f"{alpha}/{share}/{setting}"] = 100.0 * (base - acc)
    return out


def _worst(d: dict[str, float]) -> tuple[float | None, str | None]:
    if not d:
        return None, None
    k = max(d, key=lambda x: d[x])
    return d[k], k


def headline(c: dict[CellKey, dict[str, Any]], central: list[float]) -> dict[str, Any]:
    d = vs_clean_fedavg(c, DEFAULT)
    upto20 = {k: v for k, v in d.items() if int(k.split("/")[1]) <= 20}
    at40 = {k: v for k, v in d.items() if int(k.split("/")[1]) == 40}
    no_attack = {k.split("/")[0]: v for k, v in d.items() if k.endswith(f"/0/{NO_ATTACK}")}
    bd_all = {
        f"{a}/{sh}/{s}": cell["backdoor_success"]["mean"]
        for (a, sh, s, g), cell in c.items()
        if g == DEFAULT and sh <= 20 and s in BACKDOORS and "backdoor_success" in cell
    }
    adaptive = {k: v for k, v in upto20.items() if k.endswith("/adaptive")}
    w, wk = _worst(upto20)
    w40, wk40 = _worst(at40)
    clean = [
        _acc(c, (a, 0, NO_ATTACK, FEDAVG)) for a in ("iid",) if _acc(c, (a, 0, NO_ATTACK, FEDAVG))
    ]
    gap = 100.0 * (statistics.fmean(central) - clean[0]) if central and clean else None
    h: dict[str, Any] = {
        "worst_accuracy_drop_default_vs_clean_fedavg": w,
        "worst_cell_default": wk,
        "worst_accuracy_drop_default_vs_clean_fedavg_40pct": w40,
        "worst_cell_default_40pct": wk40,
        "no_attack_cost_default_max": max(no_attack.values()) if no_attack else None,
        "no_attack_cost_default": no_attack,
        "backdoor_success_default_max": max(bd_all.values()) if bd_all else None,
        "backdoor_success_default": bd_all,
        "adaptive_attack_drop_default": max(adaptive.values()) if adaptive else None,
        "central_accuracy": interval(central) if central else None,
        "clean_fedavg_accuracy_iid": clean[0] if clean else None,
        "clean_fedavg_gap_to_central_points": gap,
        "accuracy_drop_default_vs_clean_fedavg": d,
    }
    h["goal_met"] = {
        "worst_drop_at_most_3_points_upto_20pct": None if w is None else w <= GOAL_DROP,
        "no_attack_cost_at_most_2_points": (
            None if not no_attack else max(no_attack.values()) <= GOAL_NO_ATTACK
        ),
        "backdoor_at_most_5pct": None if not bd_all else max(bd_all.values()) <= GOAL_BACKDOOR,
        "adaptive_drop_at_most_3_points": (
            None if not adaptive else max(adaptive.values()) <= GOAL_DROP
        ),
        "clean_fedavg_within_1_point_of_central": None if gap is None else gap <= GOAL_CENTRAL,
    }
    return h


# ---------------------------------------------------------------- markdown


def _ci(s: dict[str, float | int] | None, scale: float = 100.0) -> str:
    if s is None:
        return ""
    text = f"{scale * s['mean']:.1f}"
    return text + (f" ± {scale * s['ci95']:.1f}" if s["n"] > 1 else "¹")


def _acc_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    if "accuracy" not in cell:
        return "n/a²"
    text = _ci(cell["accuracy"])
    if "backdoor_success" in cell:
        text += f" ({_ci(cell['backdoor_success'])})"
    return text


def _num(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    c = cells(doc["runs"])
    h, s = doc["headline"], doc["settings"]
    verdict = {True: "met", False: "**NOT met**", None: "not measured"}
    g = {k: verdict[v] for k, v in h["goal_met"].items()}
    ca = h["central_accuracy"]
    bdm, clean = h["backdoor_success_default_max"], h["clean_fedavg_accuracy_iid"]
    worst = h["worst_accuracy_drop_default_vs_clean_fedavg"]
    out = [
        START,
        "",
        "_Generated by `benchmarks/robustness.py` from `benchmarks/results/robustness.json`;"
        " do not edit by hand._",
        "",
        f"Digits, MLP({s['model']['hidden'][0]}), FedAvg ({s['algorithm']['epochs']} local"
        f" epochs, batch {s['algorithm']['batch_size']}, lr {s['algorithm']['lr']}, local"
        f" momentum {s['algorithm'].get('momentum', 0.0)}; server step"
        f" {s['algorithm'].get('server_lr', 1.0)}, server momentum"
        f" {s['algorithm'].get('server_momentum', 0.0)}),"
        f" {N_PROVIDERS} providers, {s['rounds']} rounds, up to {s['seeds']} seeds per cell;"
        " accuracy in % as mean ± 95% Student-t half-width over seeds (¹: one seed, no"
        " interval). Attackers are omniscient and collude; rules that take `f` get the"
        " declared attacker count. The run is budgeted (2 shared CPU cores): cells are run"
        " in priority order and the ones the budget cut are blank."
        + ("" if doc.get("complete", True) else " **This run was cut at its time budget.**"),
        "",
        "### Headline (the default rule against clean FedAvg at the same α)",
        "",
        f"- `worst_accuracy_drop_default_vs_clean_fedavg` = **{_num(worst)}"
        f" points** (cell {h['worst_cell_default']}), every measured cell at ≤ 20%;"
        f" goal ≤ {GOAL_DROP:g}: {g['worst_drop_at_most_3_points_upto_20pct']}.",
        f"- `worst_accuracy_drop_default_vs_clean_fedavg_40pct` ="
        f" {_num(h['worst_accuracy_drop_default_vs_clean_fedavg_40pct'])} points"
        f" (cell {h['worst_cell_default_40pct']}; reported, no goal).",
        f"- `no_attack_cost_default_max` = **{_num(h['no_attack_cost_default_max'])} points**"
        " ("
        + ", ".join(f"α = {a}: {v:.1f}" for a, v in h["no_attack_cost_default"].items())
        + f"); goal ≤ {GOAL_NO_ATTACK:g}: {g['no_attack_cost_at_most_2_points']}.",
        f"- `backdoor_success_default_max` ="
        f" **{_num(None if bdm is None else 100 * bdm)}%** over the trigger corners;"
        f" goal ≤ {100 * GOAL_BACKDOOR:g}%: {g['backdoor_at_most_5pct']}.",
        f"- `adaptive_attack_drop_default` = **{_num(h['adaptive_attack_drop_default'])}"
        f" points**; goal ≤ {GOAL_DROP:g}: {g['adaptive_drop_at_most_3_points']}.",
        f"- Central training: {_ci(ca)}% ; clean FedAvg (IID):"
        f" {_num(None if clean is None else 100 * clean)}%;"
        f" `clean_fedavg_gap_to_central_points` = {_num(h['clean_fedavg_gap_to_central_points'])};"
        f" goal ≤ {GOAL_CENTRAL:g}: {g['clean_fedavg_within_1_point_of_central']}.",
        "",
        "### No attack, every α (FedAvg and the default)",
        "",
        "| α | " + " | ".join(a for a in ALPHAS) + " |",
        "|---" * (len(ALPHAS) + 1) + "|",
    ]
    for agg in (FEDAVG, DEFAULT):
        out.append(
            f"| {agg} | "
            + " | ".join(_acc_cell(c.get((a, 0, NO_ATTACK, agg))) for a in ALPHAS)
            + " |"
        )
    out += [
        "",
        f"### The default under attack, α = {ATTACK_ALPHA}, by attacker share",
        "",
        "Accuracy in %; for backdoors, backdoor success in % in brackets.",
        "",
        "| setting | " + " | ".join(f"{sh}%" for sh in SHARES) + " |",
        "|---" * (len(SHARES) + 1) + "|",
    ]
    for st in SETTINGS:
        if st == NO_ATTACK:
            continue
        row = [_acc_cell(c.get((ATTACK_ALPHA, sh, st, DEFAULT))) for sh in SHARES]
        if any(row):
            out.append(f"| {st} | " + " | ".join(row) + " |")
    others = [a for a in ALPHAS if a != ATTACK_ALPHA]
    out += [
        "",
        "### The default under attack at other α, 20%",
        "",
        "| setting | " + " | ".join(f"α = {a}" for a in others) + " |",
        "|---" * (len(others) + 1) + "|",
    ]
    for st in SETTINGS:
        row = [_acc_cell(c.get((a, 20, st, DEFAULT))) for a in others]
        if st != NO_ATTACK and any(row):
            out.append(f"| {st} | " + " | ".join(row) + " |")
    if out[-1].startswith("|---"):
        out.append("| (not measured) |" + " |" * len(others))
    aggs = [a for a in AGGREGATORS if any(k[3] == a for k in c)]
    out += [
        "",
        f"### Every rule, 20% attackers, α = {ATTACK_ALPHA}",
        "",
        "| setting | " + " | ".join(aggs) + " |",
        "|---" * (len(aggs) + 1) + "|",
    ]
    for st in SETTINGS:
        share = 0 if st == NO_ATTACK else 20
        row = [_acc_cell(c.get((ATTACK_ALPHA, share, st, a))) for a in aggs]
        if sum(bool(x) for x in row) > 1:
            out.append(f"| {st} | " + " | ".join(row) + " |")
    fails = {k: v for k, v in h["accuracy_drop_default_vs_clean_fedavg"].items() if v > GOAL_DROP}
    if fails:
        out += [
            "",
            "Cells where the default loses more than 3 points against clean FedAvg"
            " (α/share/setting): "
            + ", ".join(f"{k} ({v:.1f})" for k, v in sorted(fails.items()))
            + ".",
        ]
    if any("error" in cell for cell in c.values()):
        errs = sorted({cell["error"].split("\n")[0] for cell in c.values() if "error" in cell})
        out += ["", "² run refused by the rule: " + "; ".join(errs)]
    out += ["", END]
    return "\n".join(out)


def write_between(path: Path, start: str, end: str, table: str, heading: str = "") -> None:
    """Replace the text from ``start`` to ``end`` with ``table`` (which carries both
    markers); append ``heading`` and the table when the markers are missing."""
    text = path.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + table + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + heading + table + "\n"
    path.write_text(text)


def write_docs(doc: dict[str, Any], path: Path = DOC) -> None:
    """Replace the text between the markers (append the section when they are missing)."""
    write_between(path, START, END, markdown(doc), "## Benchmark results\n\n")


# ---------------------------------------------------------------- main


def settings(rounds: int, seeds: int, budget_s: float) -> dict[str, Any]:
    return {
        "rounds": rounds,
        "seeds": seeds,
        "budget_s": budget_s,
        "providers": N_PROVIDERS,
        "alphas": list(ALPHAS),
        "attack_alpha": ATTACK_ALPHA,
        "attacker_shares_pct": list(SHARES),
        "model": MODEL,
        "algorithm": TRAINING,
        "aggregators": list(AGGREGATORS),
        "settings": {k: [list(g) for g in v] for k, v in SETTINGS.items()},
        "f": "declared attacker count for krum, multi_krum, trimmed_mean, bulyan"
        " (no-attack runs: the 20% count); the default takes none",
        "validators": 1,
    }


def save(
    path: Path,
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
    central: list[float],
    done: bool,
) -> dict[str, Any]:
    runs = sorted(
        runs, key=lambda r: (r["alpha"], r["share"], r["setting"], r["aggregator"], r["seed"])
    )
    c = cells(runs)
    doc = {
        "benchmark": "robustness",
        "complete": done,
        "settings": settings(args.rounds, args.seeds, args.budget_s),
        "headline": headline(c, central),
        "central_accuracy_per_seed": central,
        "cells": [
            {"alpha": k[0], "share": k[1], "setting": k[2], "aggregator": k[3], **v}
            for k, v in sorted(c.items())
        ],
        "runs": runs,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "jobs": args.jobs,
            "note": "2 CPU cores shared with other jobs: wall times are pessimistic",
        },
    }
    dump(path, doc)
    return doc


def dump(path: Path, doc: dict[str, Any]) -> None:
    """Atomic write; one line per run keeps the file small and diffable."""
    head = json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=1)
    rows = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in doc["runs"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head[: -len("\n}")] + ',\n "runs": [\n' + rows + "\n ]\n}\n")
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2 here)")
    p.add_argument("--budget-s", type=float, default=2700.0, help="no new run after this")
    p.add_argument("--quick", action="store_true", help="2 rounds, 1 seed, a few runs; temp dir")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--resume", action="store_true", help="skip runs already in --out")
    p.add_argument("--render-only", action="store_true", help="rewrite the docs from --out")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seeds, args.budget_s = 2, 1, 1.0
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "deai-robustness-quick.json" if args.quick else RESULTS
    )
    if args.render_only:
        write_docs(json.loads(out.read_text()))
        return
    runs: list[dict[str, Any]] = []
    central: list[float] = []
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if old["settings"]["rounds"] == args.rounds:
            runs, central = old["runs"], old.get("central_accuracy_per_seed", [])
    if len(central) < args.seeds:
        torch.set_num_threads(1)
        central = [central_accuracy(s) for s in range(args.seeds)]
        print(f"central accuracy per seed: {central}", flush=True)
    have = {(r["alpha"], r["share"], r["setting"], r["aggregator"], r["seed"]) for r in runs}
    keys = [
        k
        for k in plan(args.seeds)
        if (k.alpha, k.share, k.setting, k.aggregator, k.seed) not in have
    ]
    print(f"{len(keys)} runs planned ({len(runs)} kept), {args.jobs} workers -> {out}", flush=True)
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    for i, rec in enumerate(execute(keys, args.rounds, max(1, args.jobs), deadline), 1):
        runs.append(rec)
        acc = rec.get("final_accuracy")
        tag = RunKey(rec["alpha"], rec["share"], rec["setting"], rec["aggregator"], rec["seed"]).tag
        print(
            f"[{i}/{len(keys)} {time.perf_counter() - t0:6.0f}s] {tag}: "
            f"{rec.get('error') or f'{acc:.3f}'} ({rec['wall_s']}s)",
            flush=True,
        )
        save(out, args, runs, central, done=False)
    have = {(r["alpha"], r["share"], r["setting"], r["aggregator"], r["seed"]) for r in runs}
    complete = all(
        (k.alpha, k.share, k.setting, k.aggregator, k.seed) in have for k in plan(args.seeds)
    )
    doc = save(out, args, runs, central, done=complete)
    print(
        json.dumps(
            {
                k: v
                for k, v in doc["headline"].items()
                if k != "accuracy_drop_default_vs_clean_fedavg"
            },
            indent=1,
        )
    )
    if not args.quick and not args.no_docs:
        write_docs(doc)


if __name__ == "__main__":
    main()
