"""Bytes uploaded to reach a target accuracy, per codec, on federated digits.

Standalone harness (the runner will replace it): sklearn ``load_digits`` with a held-out
stratified test split, 20 providers with Dirichlet(0.5) label skew, an MLP 64-64-10,
FedAvg with local SGD. Each round every provider trains from the global model, encodes
its model delta with the codec (through error feedback where marked; the residual stays
with the provider) and uploads the exact payload; the server averages the decoded deltas
weighted by sample counts. The uncompressed run sets the target: its final test accuracy
minus one point. For each codec we count the uploaded bytes (all providers, all rounds)
until the global model first reaches the target.

Run: ``python benchmarks/compression.py`` → ``benchmarks/results/compression.json``.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.compression import Codec, CodecConfig, CodecName, ErrorFeedback, build_codec

RESULTS = Path(__file__).parent / "results" / "compression.json"
N_PROVIDERS = 20
ALPHA = 0.5  # Dirichlet concentration of the label skew
LOCAL_EPOCHS = 2
BATCH = 16
LR = 0.1
BASE_ROUNDS = 50  # rounds of the uncompressed reference run
MAX_ROUNDS = 500  # cap for compressed runs
UPLINK_BPS = 10e6  # a 10 Mbit/s provider uplink, to turn bytes into seconds


@dataclass(frozen=True)
class Variant:
    label: str  # name in the results
    codec: CodecName  # registry name
    config: CodecConfig  # registry configuration
    error_feedback: bool  # wrap the codec in ErrorFeedback


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def layer_shapes(model: nn.Module) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(p.shape) for p in model.parameters())


def partition(y: np.ndarray, seed: int) -> list[np.ndarray]:
    """Dirichlet(ALPHA) label skew; every provider gets at least 5 samples."""
    rng = np.random.default_rng(seed)
    while True:
        shards: list[list[int]] = [[] for _ in range(N_PROVIDERS)]
        for label in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == label))
            cuts = (np.cumsum(rng.dirichlet([ALPHA] * N_PROVIDERS)) * len(idx)).astype(int)[:-1]
            for shard, part in zip(shards, np.split(idx, cuts), strict=True):
                shard.extend(part.tolist())
        if min(len(s) for s in shards) >= 5:
            return [np.array(sorted(s)) for s in shards]


def local_train(model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(LOCAL_EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            b = order[start : start + BATCH]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(variant: Variant, data: dict[str, object], target: float | None, rounds: int) -> dict:
    xtr, ytr, xte, yte = (data[k] for k in ("xtr", "ytr", "xte", "yte"))
    shards: list[np.ndarray] = data["shards"]  # type: ignore[assignment]
    model = make_model(0)
    codec: Codec = build_codec(variant.codec, variant.config)
    ef = ErrorFeedback(codec) if variant.error_feedback else None
    weights = torch.tensor([len(s) for s in shards], dtype=torch.float32)
    weights /= weights.sum()
    gen = torch.Generator().manual_seed(1)
    uploaded, curve, reached = 0, [], None
    for rnd in range(1, rounds + 1):
        global_vec = parameters_to_vector(model.parameters()).detach().clone()
        agg = torch.zeros_like(global_vec)
        for i, shard in enumerate(shards):
            vector_to_parameters(global_vec.clone(), model.parameters())
            local_train(model, xtr[shard], ytr[shard], gen)  # type: ignore[index]
            delta = parameters_to_vector(model.parameters()).detach() - global_vec
            enc = ef.encode(delta, sender=str(i)) if ef else codec.encode(delta)
            uploaded += enc.nbytes
            agg += weights[i] * codec.decode(enc)
        vector_to_parameters(global_vec + agg, model.parameters())  # fresh storage
        acc = accuracy(model, xte, yte)  # type: ignore[arg-type]
        curve.append(round(acc, 4))
        if target is not None and reached is None and acc >= target:
            reached = {"round": rnd, "bytes": uploaded}
            break
    per_upload = uploaded / (len(curve) * len(shards))
    return {
        "rounds_run": len(curve),
        "final_accuracy": curve[-1],
        "bytes_per_upload": round(per_upload, 1),
        "reached": reached,
        "uploaded_bytes": uploaded,
        "accuracy_curve": curve,
    }


def variants(shapes: tuple[tuple[int, ...], ...]) -> list[Variant]:
    c = CodecConfig
    return [
        Variant("topk1%_fp32+ef", CodecName.TOPK, c(ratio=0.01), True),
        Variant("randk10%_fp32+ef", CodecName.RANDK, c(ratio=0.1), True),
        Variant("quantize8", CodecName.QUANTIZE, c(bits=8, bucket_size=512), False),
        Variant("quantize4", CodecName.QUANTIZE, c(bits=4, bucket_size=512), False),
        Variant("quantize2+ef", CodecName.QUANTIZE, c(bits=2, bucket_size=512), True),
        Variant("quantize1+ef", CodecName.QUANTIZE, c(bits=1, bucket_size=512), True),
        Variant("qsgd_s4", CodecName.QSGD, c(levels=4, bucket_size=512), False),
        Variant("sign+ef", CodecName.SIGN, c(bucket_size=512), True),
        Variant("powersgd_r2+ef", CodecName.POWERSGD, c(rank=2, shapes=shapes), True),
        Variant("topk1%_q4+ef", CodecName.TOPK_QUANTIZE, c(ratio=0.01, bits=4), True),
        Variant("topk1%_q2+ef", CodecName.TOPK_QUANTIZE, c(ratio=0.01, bits=2), True),
        Variant("topk0.5%_q2+ef", CodecName.TOPK_QUANTIZE, c(ratio=0.005, bits=2), True),
    ]


def main() -> None:
    torch.set_num_threads(1)  # tiny kernels: one thread wins on a shared CPU
    t0 = time.time()
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )
    data: dict[str, object] = {
        "xtr": torch.from_numpy(xtr),
        "ytr": torch.from_numpy(ytr).long(),
        "xte": torch.from_numpy(xte),
        "yte": torch.from_numpy(yte).long(),
        "shards": partition(ytr, seed=0),
    }
    shapes = layer_shapes(make_model(0))
    dim = sum(math.prod(s) for s in shapes)
    base = run(Variant("identity", CodecName.IDENTITY, CodecConfig(), False), data, None, BASE_ROUNDS)
    target = base["final_accuracy"] - 0.01
    base_hit = next(i for i, a in enumerate(base["accuracy_curve"]) if a >= target) + 1
    base_bytes = base_hit * N_PROVIDERS * 4 * dim
    base["reached"] = {"round": base_hit, "bytes": base_bytes}
    results = {"identity": base}
    for v in variants(shapes):
        r = run(v, data, target, MAX_ROUNDS)
        r["codec"], r["config"], r["error_feedback"] = v.codec.value, _cfg(v.config), v.error_feedback
        if r["reached"]:
            r["byte_reduction"] = round(base_bytes / r["reached"]["bytes"], 1)
            r["upload_seconds_at_10mbps"] = round(r["reached"]["bytes"] * 8 / UPLINK_BPS, 3)
        else:
            r["byte_reduction"] = None
        results[v.label] = r
        print(f"{v.label:>18}: {r['bytes_per_upload']:>8} B/upload, reached={r['reached']}, "
              f"x{r['byte_reduction']}", flush=True)
    reductions = {k: v["byte_reduction"] for k, v in results.items() if v.get("byte_reduction")}
    best = max(reductions, key=reductions.__getitem__)
    out = {
        "harness": "standalone",
        "task": "digits FedAvg, 20 providers, Dirichlet(0.5) label skew, MLP 64-64-10",
        "setup": {
            "providers": N_PROVIDERS, "alpha": ALPHA, "local_epochs": LOCAL_EPOCHS,
            "batch": BATCH, "lr": LR, "parameters": dim, "base_rounds": BASE_ROUNDS,
            "max_rounds": MAX_ROUNDS, "uplink_bps": UPLINK_BPS,
        },
        "uncompressed_final_accuracy": base["final_accuracy"],
        "target_accuracy": round(target, 4),
        "uncompressed_bytes_to_target": base_bytes,
        "best_codec": best,
        "best_byte_reduction": reductions[best],
        "byte_reduction": reductions,
        "runs": results,
        "seconds": round(time.time() - t0, 1),
        "python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"best: {best} x{reductions[best]} ({out['seconds']} s) -> {RESULTS}")


def _cfg(cfg: CodecConfig) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, tuple) else str(v) if not isinstance(v, (int, float)) else v)
            for k, v in vars(cfg).items()}


if __name__ == "__main__":
    main()
