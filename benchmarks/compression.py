"""Bytes to a target accuracy, per codec, on federated digits, through the real roles.

Every run is ``deai.simulate``: 20 providers with Dirichlet(5) label skew, an MLP
64-64-10 (4,810 parameters), FedAvg with server momentum 0.5. Bytes are the simulator's:
every message a provider sends or receives (``OpenJob``, ``TrainTask``, ``Update``), whole
encodings with their headers, up **and** down. Every compressed variant also compresses
the downstream model (``CodecSpec(downstream=True)``: the coordinator broadcasts the
model as deltas in the same codec, its error fed back by the tracked model,
``deai.compression.downstream``), except ``..._upload_only``, which shows what download
costs when it is not compressed.

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
ROUNDS = 250
ALPHA = 5.0  # Dirichlet label skew
HOLD = 3  # rounds the accuracy must stay at or above the target
T95 = {2: 4.303, 3: 3.182}
# label -> (codec spec, downstream compression)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "identity": ({"name": "identity"}, False),
    "quantize_4bit": ({"name": "quantize", "bits": 4}, True),
    "topk_1pct": ({"name": "topk", "ratio": 0.01}, True),
    "topk_quantize_2pct_4bit": ({"name": "topk_quantize", "ratio": 0.02, "bits": 4}, True),
    "topk_quantize_1pct_4bit": ({"name": "topk_quantize", "ratio": 0.01, "bits": 4}, True),
    "topk_quantize_1pct_2bit": ({"name": "topk_quantize", "ratio": 0.01, "bits": 2}, True),
    "randk_quantize_5pct_4bit": ({"name": "randk_quantize", "ratio": 0.05, "bits": 4}, True),
    "topk_quantize_1pct_4bit_upload_only": (
        {"name": "topk_quantize", "ratio": 0.01, "bits": 4},
        False,
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
    flat = FlatModel(build_model(ModelConfig("mlp", {"hidden": [64]}), (1, 8, 8), 10, seed))
    cfg = LocalTrainConfig(epochs=60, batch_size=32, lr=0.1, momentum=0.9)
    req = TrainRequest(flat.initial_vector(), splits.train.x, splits.train.y, cfg, seed)
    return evaluate(flat, train_local(flat, [req])[0].params, splits.test)[1]


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
        model=deai.ModelSpec(name="mlp", hidden=[64]),
        algorithm=deai.AlgorithmSpec(
            name="fedavg", steps=8, batch_size=16, lr=0.1, server_momentum=0.5
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


def header_bytes(codec: dict[str, Any], downstream: bool, job_id: str) -> dict[str, int]:
    """The exact header of an Update and a TrainTask of this variant (empty blobs)."""
    from deai.compression.registry import build_codec
    from deai.node.messages import TrainTask, Update, encode

    wire = build_codec(_spec(codec)).spec.to_wire()
    upd = Update(job_id, 100, wire, 4810, "float32", b"", 64)
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


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    reductions: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for seed in SEEDS:
        target = central_accuracy(seed) - 0.01
        base_bytes: int | None = None
        for label, (codec, downstream) in VARIANTS.items():
            res = run(seed, codec, downstream)
            acc = [r.accuracy for r in res.rounds]
            hit = rounds_to_target(acc, target)
            per_round = [r.bytes_up + r.bytes_down for r in res.rounds]
            bytes_to = sum(per_round[: hit + 1]) if hit is not None else None
            if label == "identity":
                base_bytes = bytes_to
            red = base_bytes / bytes_to if base_bytes and bytes_to else None
            if red is not None:
                reductions[label].append(red)
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
                    "header_bytes": header_bytes(codec, downstream, res.job_id),
                    "byte_reduction": red,
                    "notes": res.notes[:5],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    summary = {k: interval(v) for k, v in reductions.items() if len(v) == len(SEEDS)}
    missing = {k: len(SEEDS) - len(v) for k, v in reductions.items() if len(v) < len(SEEDS)}
    best = max((k for k in summary if k != "identity"), key=lambda k: summary[k]["mean"])
    out = {
        "total_byte_reduction": summary[best],
        "best_codec": best,
        "goal": 100.0,
        "byte_reduction": summary,
        "seeds_not_reaching_target": missing,
        "target": "central training's test accuracy minus 0.01, held for 3 rounds",
        "downstream_compression": True,
        "setup": {
            "harness": "deai.simulate (real Provider/Validator roles)",
            "task": f"digits FedAvg (server momentum 0.5), {PROVIDERS} providers, "
            f"Dirichlet({ALPHA}), MLP 64-64-10, 4,810 parameters",
            "rounds": ROUNDS,
            "bytes": "every message providers send and receive, whole encodings with "
            "headers, up + down",
            "variants": {k: {"codec": c, "downstream": d} for k, (c, d) in VARIANTS.items()},
        },
        "runs": runs,
        "seconds": time.perf_counter() - t0,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


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
        red_s = f"{red['mean']:.1f} ± {red['ci95']:.1f}" if red else f"per seed: {per_seed}"
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
    best = next(r for r in runs if r["codec"] == d["best_codec"])["header_bytes"]
    per_id = statistics.fmean(r["bytes_per_provider_round"] for r in ident)
    cap = per_id / (best["update"] + best["train_task"])
    note = (
        f"\n\n`total_byte_reduction` = {t['mean']:.1f} ± {t['ci95']:.1f} "
        f"(`{d['best_codec']}`, 95 % interval over {t['n']} seeds; goal ≥ {d['goal']:.0f}: "
        f"missed by {d['goal'] / t['mean']:.1f}x). Targets per seed: "
        + ", ".join(f"{r['target_accuracy']:.3f}" for r in ident)
        + f". Headers alone: an uncompressed provider-round is {per_id:,.0f} bytes, of "
        f"which {hdr['update'] + hdr['train_task']} are the two headers; the best codec's "
        f"two headers are {best['update'] + best['train_task']} bytes, so even an empty "
        f"payload could not beat {cap:.0f}x at equal rounds on this 4,810-parameter model "
        "(a bound from the measured sizes, not a run). Runs that never held the target "
        "count as missed (–); a codec's interval needs all seeds at the target, so codecs "
        "that missed one seed show their per-seed reductions instead."
    )
    doc = Path(__file__).parents[1] / "docs" / "communication.md"
    write_block(doc, "compression", "\n".join(rows) + note)


if __name__ == "__main__":
    docs() if "--docs" in sys.argv else main()
