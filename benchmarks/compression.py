"""Bytes uploaded to reach a target accuracy, per codec, on federated digits.

Standalone harness (the runner will replace it): sklearn ``load_digits`` with a held-out
stratified test split, 20 providers with Dirichlet(0.5) label skew, an MLP 64-64-10,
FedAvg with local SGD (the 20 independent local models are trained as one batched
computation, as the runtime's simulation does). Each round every provider trains from the
global model, encodes its model delta with the codec (through error feedback where marked;
the residual stays with the provider) and uploads the exact payload; the server averages
the decoded deltas weighted by sample counts. The uncompressed run sets the target: its
final test accuracy minus one point. For each codec we count the uploaded bytes (all
providers, all rounds) until the global model first reaches the target.

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
from torch.nn.utils import parameters_to_vector

from deai.compression import Codec, CodecConfig, CodecName, ErrorFeedback, build_codec

RESULTS = Path(__file__).parent / "results" / "compression.json"
N_PROVIDERS = 20
ALPHA = 0.5  # Dirichlet concentration of the label skew
LOCAL_STEPS = 8  # local SGD steps per round (about two epochs of an average shard)
BATCH = 16
LR = 0.1
BASE_ROUNDS = 100  # rounds of the uncompressed reference run
MAX_ROUNDS = 1000  # cap for compressed runs
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


def forward(params: Tensor, x: Tensor) -> Tensor:
    """The MLP for ``n`` stacked parameter vectors ``[n, d]`` (``parameters_to_vector``
    order of ``make_model``) on inputs ``[n, B, 64]``; logits ``[n, B, 10]``."""
    n = params.shape[0]
    w1, b1, w2, b2 = torch.split(params, [64 * 64, 64, 10 * 64, 10], dim=1)
    h = torch.relu(x @ w1.view(n, 64, 64).transpose(1, 2) + b1[:, None])  # [n, B, 64]
    return h @ w2.view(n, 10, 64).transpose(1, 2) + b2[:, None]  # [n, B, 10]


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


def local_train(global_vec: Tensor, data: dict, gen: torch.Generator) -> Tensor:
    """All providers' local SGD at once (one batched computation, independent models);
    returns their deltas ``[n, d]``. Minibatches are drawn with replacement."""
    table, sizes = data["table"], data["sizes"]  # [n, max_len] train indices, [n]
    n = len(sizes)
    params = global_vec.repeat(n, 1).requires_grad_(True)  # [n, d]
    for _ in range(LOCAL_STEPS):
        pick = (torch.rand(n, BATCH, generator=gen) * sizes[:, None]).long()  # [n, B]
        rows = table.gather(1, pick)  # [n, B]
        logits = forward(params, data["xtr"][rows])  # [n, B, 10]
        # Sum of the providers' mean losses: each row's gradient is its own provider's.
        loss = nn.functional.cross_entropy(logits.reshape(-1, 10), data["ytr"][rows].reshape(-1))
        (grad,) = torch.autograd.grad(loss * n, params)
        params = (params - LR * grad).detach().requires_grad_(True)
    return (params - global_vec).detach()


def accuracy(vec: Tensor, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((forward(vec[None], x[None])[0].argmax(1) == y).float().mean())


def run(variant: Variant, data: dict, target: float | None, rounds: int) -> dict:
    codec: Codec = build_codec(variant.codec, variant.config)
    ef = ErrorFeedback(codec) if variant.error_feedback else None
    weights = data["weights"]
    gen = torch.Generator().manual_seed(1)
    global_vec = parameters_to_vector(make_model(0).parameters()).detach()
    uploaded, curve, reached, diverged = 0, [], None, None
    for rnd in range(1, rounds + 1):
        deltas = local_train(global_vec, data, gen)
        agg = torch.zeros_like(global_vec)
        for i in range(len(deltas)):
            enc = ef.encode(deltas[i], sender=str(i)) if ef else codec.encode(deltas[i])
            uploaded += enc.nbytes
            agg += weights[i] * codec.decode(enc)
        global_vec = global_vec + agg
        if not bool(torch.isfinite(global_vec).all()):
            diverged = rnd
            break
        acc = accuracy(global_vec, data["xte"], data["yte"])
        curve.append(round(acc, 4))
        if target is not None and reached is None and acc >= target:
            reached = {"round": rnd, "bytes": uploaded}
            break
    per_upload = uploaded / (max(1, len(curve)) * len(weights))
    return {
        "diverged_at_round": diverged,
        "rounds_run": len(curve),
        "final_accuracy": curve[-1] if curve else None,
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
        # Stochastic 1-bit rounding is unbiased but not contractive: no error feedback.
        Variant("quantize1", CodecName.QUANTIZE, c(bits=1, bucket_size=512), False),
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
    shards = partition(ytr, seed=0)
    table = torch.zeros(N_PROVIDERS, max(len(s) for s in shards), dtype=torch.long)
    for i, s in enumerate(shards):
        table[i, : len(s)] = torch.from_numpy(s)
    sizes = torch.tensor([len(s) for s in shards], dtype=torch.float32)
    data = {
        "xtr": torch.from_numpy(xtr),
        "ytr": torch.from_numpy(ytr).long(),
        "xte": torch.from_numpy(xte),
        "yte": torch.from_numpy(yte).long(),
        "table": table,
        "sizes": sizes,
        "weights": sizes / sizes.sum(),
    }
    shapes = layer_shapes(make_model(0))
    dim = sum(math.prod(s) for s in shapes)
    identity = Variant("identity", CodecName.IDENTITY, CodecConfig(), False)
    base = run(identity, data, None, BASE_ROUNDS)
    target = base["final_accuracy"] - 0.01
    base_hit = next(i for i, a in enumerate(base["accuracy_curve"]) if a >= target) + 1
    base_bytes = base_hit * N_PROVIDERS * 4 * dim
    base["reached"] = {"round": base_hit, "bytes": base_bytes}
    print(f"identity: final {base['final_accuracy']}, target {target:.4f} at round {base_hit}")
    results = {"identity": base}
    for v in variants(shapes):
        r = run(v, data, target, MAX_ROUNDS)
        r["codec"], r["config"] = v.codec.value, _cfg(v.config)
        r["error_feedback"] = v.error_feedback
        if r["reached"]:
            r["byte_reduction"] = round(base_bytes / r["reached"]["bytes"], 1)
            r["upload_seconds_at_10mbps"] = round(r["reached"]["bytes"] * 8 / UPLINK_BPS, 3)
        else:
            r["byte_reduction"] = None
        results[v.label] = r
        print(
            f"{v.label:>18}: {r['bytes_per_upload']:>8} B/upload, reached={r['reached']}, "
            f"x{r['byte_reduction']}",
            flush=True,
        )
    reductions = {k: v["byte_reduction"] for k, v in results.items() if v.get("byte_reduction")}
    best = max(reductions, key=reductions.__getitem__) if reductions else None
    out = {
        "harness": "standalone",
        "task": "digits FedAvg, 20 providers, Dirichlet(0.5) label skew, MLP 64-64-10",
        "setup": {
            "providers": N_PROVIDERS,
            "alpha": ALPHA,
            "local_steps": LOCAL_STEPS,
            "batch": BATCH,
            "lr": LR,
            "parameters": dim,
            "base_rounds": BASE_ROUNDS,
            "max_rounds": MAX_ROUNDS,
            "uplink_bps": UPLINK_BPS,
        },
        "uncompressed_final_accuracy": base["final_accuracy"],
        "target_accuracy": round(target, 4),
        "uncompressed_bytes_to_target": base_bytes,
        "best_codec": best,
        "best_byte_reduction": reductions[best] if best else None,
        "byte_reduction": reductions,
        "runs": results,
        "seconds": round(time.time() - t0, 1),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"best: {best} x{out['best_byte_reduction']} ({out['seconds']} s) -> {RESULTS}")


def _cfg(cfg: CodecConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in vars(cfg).items():
        out[k] = v if isinstance(v, int | float) else list(v) if isinstance(v, tuple) else str(v)
    return out


if __name__ == "__main__":
    main()
