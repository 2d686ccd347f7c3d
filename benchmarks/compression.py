"""Bytes to a target accuracy, per codec, on federated digits, through the real roles.

Every run is ``deai.simulate``: 20 providers with Dirichlet(5) label skew, an MLP
64-1024-10 (76,810 parameters), FedAvg with local momentum 0.9 and server momentum 0.5.
Bytes are the simulator's: every message a provider sends or receives (``OpenJob``,
``TrainTask``, ``Update``), whole encodings with their headers, up **and** down. Every
compressed variant also compresses the downstream model (``CodecSpec(downstream=True)``:
the coordinator broadcasts the model as deltas in the same codec, its error fed back by
the tracked model, ``deai.compression.downstream``); providers keep their upload error
feedback (``error_feedback=True``), so both directions carry what they dropped forward.

Why this model: with the earlier 4,810-parameter MLP the two message headers (~450
bytes per provider-round, both ways) capped any codec at ~85x against 38.9 kB of
uncompressed traffic. At 76,810 parameters an uncompressed provider-round is ~615 kB, the
headers are under 0.1 % of it, and top-k keeps a few hundred coordinates per message.

The target is central training's test accuracy minus one point: the same MLP trained on
the whole training split (one request, the same trainer) for 60 epochs. A run reaches the
target at the first round from which its test accuracy stays at or above it for ``HOLD``
rounds, so a one-round spike does not count. ``total_byte_reduction`` is the uncompressed
run's bytes to target over the best codec's, per seed, then a 95 % interval over seeds.

Dirichlet(5), not (0.5): with alpha 0.5 uncompressed FedAvg itself never gets within one
point of central training here (seed 0: best 0.947 against a target of 0.951 in 300
rounds), so no codec could be measured against that target.

Run: ``nice -n 10 python benchmarks/compression.py`` -> ``benchmarks/results/compression.json``;
``python benchmarks/compression.py --docs`` writes the table in docs/communication.md.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "compression.json"
SEEDS = (0, 1, 2)
PROVIDERS = 20
ROUNDS = 150
HIDDEN = [1024]  # MLP 64-1024-10: 76,810 parameters
LOCAL_MOMENTUM = 0.9  # providers' heavy-ball momentum (central training uses the same)
ALPHA = 5.0  # Dirichlet label skew
HOLD = 3  # rounds the accuracy must stay at or above the target
T95 = {2: 4.303, 3: 3.182}
# label -> (codec spec, downstream compression)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "identity": ({"name": "identity"}, False),
    "topk_quantize_0.5pct_4bit": ({"name": "topk_quantize", "ratio": 0.005, "bits": 4}, True),
    "topk_quantize_0.3pct_4bit": ({"name": "topk_quantize", "ratio": 0.003, "bits": 4}, True),
    "topk_quantize_0.2pct_4bit": ({"name": "topk_quantize", "ratio": 0.002, "bits": 4}, True),
    # the same top-k with Elias-Fano coded indices (k (2 + log2(d/k)) bits, not k ceil(log2 d))
    "topk_eliasfano_0.5pct_4bit": (
        {"name": "topk_eliasfano_quantize", "ratio": 0.005, "bits": 4},
        True,
    ),
    "topk_eliasfano_1pct_2bit": (
        {"name": "topk_eliasfano_quantize", "ratio": 0.01, "bits": 2},
        True,
    ),
}


def interval(xs: list[float]) -> dict[str, float]:
    m = statistics.fmean(xs)
    h = T95[len(xs) - 1] * statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0
    return {"mean": m, "ci95": h, "n": len(xs)}


def central_accuracy(seed: int) -> float:
    """The same MLP trained centrally (one request holding the whole training split)."""
    from deai.learning.data import DatasetName, load_dataset
    from deai.learning.models import ModelConfig, build_model
    from deai.learning.params import FlatModel
    from deai.learning.train import LocalTrainConfig, TrainRequest, evaluate, train_local

    splits = load_dataset(DatasetName.DIGITS, seed=seed)
    flat = FlatModel(build_model(ModelConfig("mlp", {"hidden": HIDDEN}), (1, 8, 8), 10, seed))
    cfg = LocalTrainConfig(epochs=60, batch_size=32, lr=0.1, momentum=0.9)
    req = TrainRequest(flat.initial_vector(), splits.train.x, splits.train.y, cfg, seed)
    return evaluate(flat, train_local(flat, [req])[0].params, splits.test)[1]


def model_dim() -> int:
    from deai.learning.models import ModelConfig, build_model
    from deai.learning.params import FlatModel

    return FlatModel(build_model(ModelConfig("mlp", {"hidden": HIDDEN}), (1, 8, 8), 10, 0)).dim


def rounds_to_target(acc: list[float], target: float) -> int | None:
    for i in range(len(acc) - HOLD + 1):
        if all(a >= target for a in acc[i : i + HOLD]):
            return i
    return None


def run(seed: int, codec: dict[str, Any], downstream: bool) -> Any:
    import deai

    spec = deai.JobSpec(
        name="compression",
        seed=seed,
        rounds=ROUNDS,
        model=deai.ModelSpec(name="mlp", hidden=HIDDEN),
        algorithm=deai.AlgorithmSpec(
            name="fedavg",
            steps=8,
            batch_size=16,
            lr=0.1,
            momentum=LOCAL_MOMENTUM,
            server_momentum=0.5,
        ),
        aggregation=deai.AggregationSpec(rule="mean"),
        codec=deai.CodecSpec(**codec, error_feedback=True, downstream=downstream),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(dataset="digits", partition="dirichlet", alpha=ALPHA),
        nodes=[deai.NodeGroup(role="provider", count=PROVIDERS), deai.NodeGroup(role="validator")],
    )
    return deai.simulate(spec, world)


def message_sizes(res: Any) -> dict[str, float]:
    """Mean whole encoding of each model-carrying message, from the run's byte counts."""
    by_kind = res.metrics["bytes_by_kind"]
    n = PROVIDERS * len(res.rounds)  # one task and one update per provider and round
    return {"update": by_kind["update"] / n, "train_task": by_kind["train_task"] / n}


def header_bytes(codec: dict[str, Any], downstream: bool, job_id: str, dim: int) -> dict[str, int]:
    """The exact header of an Update and a TrainTask of this variant (empty blobs)."""
    from deai.compression.registry import build_codec
    from deai.node.messages import TrainTask, Update, encode

    wire = build_codec(_spec(codec)).spec.to_wire()
    upd = Update(job_id, 100, wire, dim, "float32", b"", 64)
    task = (
        TrainTask(job_id, 100, b"", "0" * 64, wire, 99)
        if downstream
        else TrainTask(job_id, 100, b"", "0" * 64)
    )
    return {"update": len(encode(upd)), "train_task": len(encode(task))}


def _spec(codec: dict[str, Any]) -> Any:
    from deai.compression.registry import CodecConfig, codec_spec

    fields = {k: v for k, v in codec.items() if k != "name"}
    return codec_spec(codec["name"], CodecConfig(**fields))


def main(resume: list[dict[str, Any]] | None = None) -> None:
    """Run every seed and variant; ``resume``: runs already measured (the JSON lines this
    prints), which are kept and not run again."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = list(resume or [])
    dim = model_dim()
    for seed in SEEDS:
        done = {r["codec"]: r for r in runs if r["seed"] == seed}
        if len(done) == len(VARIANTS):
            continue
        base = done.get("identity")
        target = base["target_accuracy"] if base else central_accuracy(seed) - 0.01
        base_bytes: int | None = base["bytes_to_target"] if base else None
        for label, (codec, downstream) in VARIANTS.items():
            if label in done:
                continue
            res = run(seed, codec, downstream)
            acc = [r.accuracy for r in res.rounds]
            hit = rounds_to_target(acc, target)
            per_round = [r.bytes_up + r.bytes_down for r in res.rounds]
            bytes_to = sum(per_round[: hit + 1]) if hit is not None else None
            if label == "identity":
                base_bytes = bytes_to
            red = base_bytes / bytes_to if base_bytes and bytes_to else None
            runs.append(
                {
                    "seed": seed,
                    "codec": label,
                    "downstream": downstream,
                    "target_accuracy": target,
                    "final_accuracy": acc[-1],
                    "best_accuracy": max(acc),
                    "round_reached": None if hit is None else hit + 1,
                    "bytes_to_target": bytes_to,
                    "bytes_up_total": res.bytes_up,
                    "bytes_down_total": res.bytes_down,
                    "bytes_per_provider_round": statistics.fmean(per_round) / PROVIDERS,
                    "message_bytes": message_sizes(res),
                    "header_bytes": header_bytes(codec, downstream, res.job_id, dim),
                    "byte_reduction": red,
                    "notes": res.notes[:5],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            write_results(runs, dim, time.perf_counter() - t0)  # after every run
    print(f"wrote {RESULTS}")


def write_results(runs: list[dict[str, Any]], dim: int, seconds: float) -> None:
    """The JSON from the runs so far: a codec's interval needs every seed at the target
    (``seeds_done`` says how many seeds have all their variants)."""
    reductions: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in runs:
        if r["byte_reduction"] is not None:
            reductions[r["codec"]].append(r["byte_reduction"])
    done = [s for s in SEEDS if sum(r["seed"] == s for r in runs) == len(VARIANTS)]
    summary = {k: interval(v) for k, v in reductions.items() if len(v) == len(SEEDS)}
    missing = {k: len(done) - len(v) for k, v in reductions.items() if len(v) < len(done)}
    held = [k for k in summary if k != "identity"]  # codecs at the target on every seed
    best = max(held, key=lambda k: summary[k]["mean"]) if held else None
    out = {
        "total_byte_reduction": summary[best] if best else None,
        "best_codec": best,
        "goal": 100.0,
        "byte_reduction": summary,
        "seeds_done": len(done),
        "seeds_not_reaching_target": missing,
        "target": "central training's test accuracy minus 0.01, held for 3 rounds",
        "downstream_compression": True,
        "setup": {
            "harness": "deai.simulate (real Provider/Validator roles)",
            "task": f"digits FedAvg (server momentum 0.5), {PROVIDERS} providers, "
            f"Dirichlet({ALPHA}), MLP {'-'.join(map(str, [64, *HIDDEN, 10]))}, "
            f"{dim:,} parameters, local momentum {LOCAL_MOMENTUM}",
            "model_parameters": dim,
            "rounds": ROUNDS,
            "seeds": list(SEEDS),
            "bytes": "every message providers send and receive, whole encodings with "
            "headers, up + down",
            "variants": {k: {"codec": c, "downstream": d} for k, (c, d) in VARIANTS.items()},
        },
        "runs": runs,
        "seconds_this_invocation": seconds,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


def docs() -> None:
    """Write the table in docs/communication.md from the JSON."""
    sys.path.insert(0, str(Path(__file__).parent))
    from docs_table import write_block

    d = json.loads(RESULTS.read_text())
    runs = d["runs"]
    rows = [
        "| codec | downstream | `Update` (header) bytes | `TrainTask` (header) bytes "
        "| bytes / provider / round | round reached (per seed) | reduction |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in d["setup"]["variants"]:
        rs = [r for r in runs if r["codec"] == label]
        m, h = rs[0]["message_bytes"], rs[0]["header_bytes"]
        reached = ", ".join(str(r["round_reached"] or "–") for r in rs)
        red = d["byte_reduction"].get(label)
        per_seed = ", ".join(
            f"{r['byte_reduction']:.1f}" if r["byte_reduction"] else "–" for r in rs
        )
        red_s = (
            f"{red['mean']:.1f} ± {red['ci95']:.1f} ({per_seed})"
            if red and label != "identity"
            else f"{red['mean']:.1f} ± {red['ci95']:.1f}"
            if red
            else f"per seed: {per_seed}"
        )
        if label == d["best_codec"]:
            red_s = f"**{red_s}**"
        per = statistics.fmean(r["bytes_per_provider_round"] for r in rs)
        rows.append(
            f"| `{label}` | {'yes' if rs[0]['downstream'] else 'no'} "
            f"| {m['update']:,.0f} ({h['update']}) | {m['train_task']:,.0f} ({h['train_task']}) "
            f"| {per:,.0f} | {reached} | {red_s} |"
        )
    t = d["total_byte_reduction"]
    ident = [r for r in runs if r["codec"] == "identity"]
    hdr = ident[0]["header_bytes"]
    per_id = statistics.fmean(r["bytes_per_provider_round"] for r in ident)
    if t is None:
        head = (
            "\n\n`total_byte_reduction`: none (no codec held the target on every seed; "
            f"goal ≥ {d['goal']:.0f})."
        )
        best_hdr = hdr
    else:
        lo = t["mean"] - t["ci95"]
        if lo >= d["goal"]:
            verdict = "met, the whole interval above it"
        elif t["mean"] >= d["goal"]:
            verdict = f"met by the mean; the interval's lower end, {lo:.1f}, is below it"
        else:
            verdict = f"missed by {d['goal'] / t['mean']:.1f}x"
        head = (
            f"\n\n`total_byte_reduction` = {t['mean']:.1f} ± {t['ci95']:.1f} "
            f"(`{d['best_codec']}`, 95 % interval over {t['n']} seeds; goal ≥ "
            f"{d['goal']:.0f}: {verdict})."
        )
        best_hdr = next(r for r in runs if r["codec"] == d["best_codec"])["header_bytes"]
    seeds = d["setup"]["seeds"]
    if d["seeds_done"] < len(seeds):
        head += (
            f" **Partial run**: {d['seeds_done']} of {len(seeds)} seeds have all their "
            f"variants; the table shows every finished run."
        )
    cap = per_id / (best_hdr["update"] + best_hdr["train_task"])
    note = (
        head
        + " Targets per seed: "
        + ", ".join(f"{r['target_accuracy']:.3f}" for r in ident)
        + f". Headers alone: an uncompressed provider-round is {per_id:,.0f} bytes, of "
        f"which {hdr['update'] + hdr['train_task']} are the two headers; the best codec's "
        f"two headers are {best_hdr['update'] + best_hdr['train_task']} bytes, so even an "
        f"empty payload could not beat {cap:,.0f}x at equal rounds on this "
        f"{d['setup']['model_parameters']:,}-parameter model "
        "(a bound from the measured sizes, not a run). Runs that never held the target "
        "count as missed (–); a codec's interval needs all seeds at the target, so codecs "
        "that missed a seed show their per-seed reductions instead."
    )
    doc = Path(__file__).parents[1] / "docs" / "communication.md"
    write_block(doc, "compression", "\n".join(rows) + note)


if __name__ == "__main__":
    if "--docs" in sys.argv:
        docs()
    elif "--resume" in sys.argv:  # --resume LOG: keep the runs LOG printed, run the rest
        log = Path(sys.argv[sys.argv.index("--resume") + 1]).read_text().splitlines()
        main([json.loads(line) for line in log if line.startswith("{")])
    else:
        main()
