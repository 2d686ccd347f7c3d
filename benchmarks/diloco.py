"""DiLoCo versus synchronous data-parallel training of the small LM, and federated LoRA.

Standalone harness (the runner will replace it). ``K`` workers each hold a contiguous
shard of a generated corpus (:mod:`deai.learning.lm.corpus`, domain ``town``).

* **Synchronous DP**: every step each worker uploads its full fp32 gradient (4 bytes per
  parameter); the average drives one shared AdamW step.
* **DiLoCo** (Douillard et al. 2023): each worker runs ``H`` AdamW steps (its optimizer
  state kept across rounds), then uploads its pseudo-gradient, optionally through a codec
  with error feedback; :class:`OuterNesterov` (lr 0.7, momentum 0.9) applies the average.

Both see the same tokens per step per worker. The target is the DP run's final validation
loss plus 2%; we count all workers' uploaded bytes until each run first reaches it.

**Federated LoRA**: the DP-trained model is fine-tuned on the other domain (``farm``) by
``K`` providers with FedAvg, once with full fine-tuning (upload the full model delta) and
once with LoRA adapters (upload only ``A`` and ``B``); we report bytes per round and the
loss reached. Run: ``python benchmarks/diloco.py`` → ``benchmarks/results/diloco.json``.
``--only LABEL[,LABEL]`` reruns the DP baseline and only those DiLoCo variants, and merges
them into the existing JSON, provided the rerun baseline is identical to the recorded one
(same code and settings); the other variants and the LoRA results are kept as recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.compression import CodecConfig, CodecName, ErrorFeedback, build_codec
from deai.learning.lm import (
    GPT,
    Domain,
    GPTConfig,
    LoRAConfig,
    OuterNesterov,
    apply_lora,
    batches,
    evaluate,
    generate,
    load_lora_vector,
    lora_parameters,
    lora_vector,
    pseudo_gradient,
)
from deai.learning.lm.tokenizer import encode

RESULTS = Path(__file__).parent / "results" / "diloco.json"
CFG = GPTConfig()  # ~120 k parameters
K = 4  # workers
BATCH = 16  # sequences per worker per step
LR = 3e-3  # inner / DP AdamW learning rate
STEPS = 400  # DP steps (each worker computes STEPS gradients)
EVAL_EVERY = 25  # DP evaluation period, in steps
MAX_STEPS_FACTOR = 3  # DiLoCo may run up to this many times the DP steps
TOLERANCE = 0.02  # "same loss": within 2% of the DP final loss
FT_ROUNDS, FT_LOCAL_STEPS, LORA_LR = 6, 20, 1e-2


@dataclass(frozen=True)
class DiLoCoVariant:
    label: str  # name in the results
    inner_steps: int  # H
    codec: CodecName  # codec of the pseudo-gradient
    config: CodecConfig  # codec configuration
    error_feedback: bool  # residual kept by each worker
    outer_lr: float = 0.7  # DiLoCo's outer Nesterov learning rate
    outer_momentum: float = 0.9  # 0 for SparseLoCo, where EF replaces outer momentum


def data() -> tuple[list[Tensor], Tensor]:
    train = encode(generate(400_000, seed=0, domain=Domain.TOWN))
    val = encode(generate(30_000, seed=10_001, domain=Domain.TOWN))
    return list(train.chunk(K)), val


def new_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG)


def set_vector(model: GPT, vector: Tensor) -> None:
    vector_to_parameters(vector.clone(), model.parameters())


def run_dp(shards: list[Tensor], val: Tensor) -> dict:
    model = new_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    gens = [torch.Generator().manual_seed(100 + w) for w in range(K)]
    n = sum(p.numel() for p in model.parameters())
    curve = [(0, 0, evaluate(model, val))]
    for step in range(1, STEPS + 1):
        # One backward over the K workers' batches stacked gives exactly the average of
        # their K gradients (equal batch sizes): the all-reduce, computed in one pass.
        pairs = [batches(shards[w], CFG.block_size, BATCH, gens[w]) for w in range(K)]
        x = torch.cat([p[0] for p in pairs])  # [K * B, T]
        y = torch.cat([p[1] for p in pairs])  # [K * B, T]
        opt.zero_grad()
        model.loss(x, y).backward()
        opt.step()
        if step % EVAL_EVERY == 0:
            curve.append((step, step * K * 4 * n, evaluate(model, val)))
    return {"curve": curve, "parameters": n, "bytes_per_step_per_worker": 4 * n, "model": model}


def run_diloco(v: DiLoCoVariant, shards: list[Tensor], val: Tensor, target: float) -> dict:
    model = new_model()
    start = parameters_to_vector(model.parameters()).detach()
    outer = OuterNesterov(start, lr=v.outer_lr, momentum=v.outer_momentum)
    n = outer.params.numel()
    shapes = tuple(tuple(p.shape) for p in model.parameters())
    cfg = CodecConfig(**{**vars(v.config), "shapes": shapes})
    codecs = [build_codec(v.codec, cfg) for _ in range(K)]
    efs = [ErrorFeedback(c) if v.error_feedback else None for c in codecs]
    workers = [new_model() for _ in range(K)]
    opts = [torch.optim.AdamW(m.parameters(), lr=LR) for m in workers]
    gens = [torch.Generator().manual_seed(100 + w) for w in range(K)]
    t0 = time.time()
    uploaded, curve, reached = 0, [(0, 0, evaluate(model, val))], None
    for rnd in range(1, int(MAX_STEPS_FACTOR * STEPS) // v.inner_steps + 1):
        deltas = []
        for w in range(K):
            set_vector(workers[w], outer.params)
            for _ in range(v.inner_steps):
                x, y = batches(shards[w], CFG.block_size, BATCH, gens[w])
                opts[w].zero_grad()
                workers[w].loss(x, y).backward()
                opts[w].step()
            local = parameters_to_vector(workers[w].parameters()).detach()
            delta = pseudo_gradient(outer.params, local)
            ef = efs[w]
            enc = ef.encode(delta) if ef else codecs[w].encode(delta)
            uploaded += enc.nbytes
            deltas.append(codecs[w].decode(enc))
        set_vector(model, outer.step(torch.stack(deltas).mean(0)))
        loss = evaluate(model, val)
        curve.append((rnd * v.inner_steps, uploaded, loss))
        if loss <= target:
            reached = {"step": rnd * v.inner_steps, "bytes": uploaded, "loss": round(loss, 4)}
            break
    return {
        "inner_steps": v.inner_steps,
        "codec": v.codec.value,
        "error_feedback": v.error_feedback,
        "outer_lr": v.outer_lr,
        "outer_momentum": v.outer_momentum,
        "bytes_per_upload": uploaded // (len(curve) - 1) // K,
        "full_upload_bytes": 4 * n,
        "reached": reached,
        "final_loss": round(curve[-1][2], 4),
        "curve": [(s, b, round(loss, 4)) for s, b, loss in curve],
        "seconds": round(time.time() - t0, 1),
    }


def federated_finetune(base: GPT, lora: bool) -> dict:
    """FedAvg fine-tuning on the farm domain, full model or LoRA adapters."""
    train = encode(generate(200_000, seed=1, domain=Domain.FARM)).chunk(K)
    val = encode(generate(30_000, seed=10_002, domain=Domain.FARM))
    model = new_model()
    model.load_state_dict(base.state_dict())
    if lora:
        apply_lora(model, LoRAConfig(rank=4, alpha=8.0))

    def get() -> Tensor:
        return lora_vector(model) if lora else parameters_to_vector(model.parameters()).detach()

    def put(vec: Tensor) -> None:
        (load_lora_vector if lora else set_vector)(model, vec)

    start_loss = evaluate(model, val)
    gens = [torch.Generator().manual_seed(200 + w) for w in range(K)]
    bytes_per_round, losses = 0, [round(start_loss, 4)]
    for _ in range(FT_ROUNDS):
        global_vec = get().clone()
        updates = []
        for w in range(K):
            put(global_vec)
            params = lora_parameters(model) if lora else list(model.parameters())
            opt = torch.optim.AdamW(params, lr=LORA_LR if lora else LR)
            for _ in range(FT_LOCAL_STEPS):
                x, y = batches(train[w], CFG.block_size, BATCH, gens[w])
                opt.zero_grad()
                model.loss(x, y).backward()
                opt.step()
            update = get() - global_vec
            updates.append(update)
            bytes_per_round = K * 4 * update.numel()
        put(global_vec + torch.stack(updates).mean(0))
        losses.append(round(evaluate(model, val), 4))
    return {
        "uploaded_values_per_provider": updates[0].numel(),
        "bytes_per_round": bytes_per_round,
        "rounds": FT_ROUNDS,
        "local_steps": FT_LOCAL_STEPS,
        "loss_before": round(start_loss, 4),
        "loss_after": losses[-1],
        "loss_curve": losses,
    }


def variants() -> list[DiLoCoVariant]:
    q4 = CodecConfig(bits=4, bucket_size=1024)
    q3 = CodecConfig(bits=3, bucket_size=1024)
    q2 = CodecConfig(bits=2, bucket_size=1024)
    # SparseLoCo-style (Sarfi et al. 2025): top-3% of the pseudo-gradient, kept values at
    # 4 bits, error feedback in place of outer momentum, outer SGD with lr 1.
    sparse = CodecConfig(ratio=0.03, bits=4)
    topk = CodecName.TOPK_QUANTIZE
    return [  # each variant costs up to MAX_STEPS_FACTOR times the DP run's compute
        DiLoCoVariant("diloco_h100_q4+ef", 100, CodecName.QUANTIZE, q4, True),
        DiLoCoVariant("diloco_h200_q4+ef", 200, CodecName.QUANTIZE, q4, True),
        DiLoCoVariant("sparseloco_h100_topk3%_q4+ef", 100, topk, sparse, True, 1.0, 0.0),
        # Fewer bits per value at H=200: 46 160 (3-bit) and 31 088 (2-bit) bytes per upload
        # against 61 232 at 4 bits, the quantization error carried over by error feedback.
        DiLoCoVariant("diloco_h200_q3+ef", 200, CodecName.QUANTIZE, q3, True),
        DiLoCoVariant("diloco_h200_q2+ef", 200, CodecName.QUANTIZE, q2, True),
    ]


def dp_record(dp: dict, final: float, target: float, hit: tuple) -> dict:
    return {
        "final_loss": round(final, 4),
        "target_loss": round(target, 4),
        "reached": {"step": hit[0], "bytes": hit[1]},
        "bytes_per_step_per_worker": dp["bytes_per_step_per_worker"],
        "curve": [[s, b, round(loss, 4)] for s, b, loss in dp["curve"]],
    }


def best_of(runs: dict[str, dict]) -> tuple[str | None, float | None]:
    """The variant with the largest byte reduction among those that reached the target."""
    reductions = {k: r["byte_reduction"] for k, r in runs.items() if r["byte_reduction"]}
    best = max(reductions, key=reductions.__getitem__) if reductions else None
    return best, (reductions[best] if best else None)


def main(only: list[str] | None = None) -> None:
    torch.set_num_threads(1)  # tiny kernels: one thread wins on a shared CPU
    t0 = time.time()
    chosen = [v for v in variants() if only is None or v.label in only]
    if only is not None and len(chosen) != len(set(only)):
        known = [v.label for v in variants()]
        raise SystemExit(f"--only: unknown label in {only}; known: {known}")
    previous = json.loads(RESULTS.read_text()) if only is not None else None
    shards, val = data()
    dp = run_dp(shards, val)
    final = dp["curve"][-1][2]
    target = final * (1 + TOLERANCE)
    hit = next(c for c in dp["curve"] if c[2] <= target)
    print(f"dp: final {final:.4f}, target {target:.4f} at step {hit[0]}", flush=True)
    dp_out = dp_record(dp, final, target, hit)
    if previous is not None and json.loads(json.dumps(dp_out)) != previous["dp"]:
        raise SystemExit("--only: the rerun DP baseline differs from the recorded one; rerun all")
    runs: dict[str, dict] = dict(previous["diloco"]) if previous is not None else {}
    for v in chosen:
        r = run_diloco(v, shards, val, target)
        r["byte_reduction"] = round(hit[1] / r["reached"]["bytes"], 1) if r["reached"] else None
        runs[v.label] = r
        print(f"{v.label}: reached={r['reached']} x{r['byte_reduction']}", flush=True)
    best, reduction = best_of(runs)
    if previous is not None:
        lora = previous["federated_lora"]
    else:
        lora = {"full": federated_finetune(dp["model"], lora=False)}
        lora["lora_r4"] = federated_finetune(dp["model"], lora=True)
        lora["byte_ratio_full_over_lora"] = round(
            lora["full"]["bytes_per_round"] / lora["lora_r4"]["bytes_per_round"], 1
        )
    out = {
        "harness": "standalone",
        "model": {**vars(CFG), "parameters": dp["parameters"]},
        "setup": {
            "workers": K,
            "batch_per_worker": BATCH,
            "lr": LR,
            "dp_steps": STEPS,
            "tolerance": TOLERANCE,
            "corpus": "generated, domain town, 400k chars",
        },
        "dp": dp_out,
        "diloco": runs,
        "best_variant": best,
        "byte_reduction": reduction,
        "federated_lora": lora,
        "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    if previous is not None:
        out["seconds"] = previous["seconds"]
        note = (
            f"Variants {', '.join(v.label for v in chosen)} were added by a later run "
            f"(--only, {round(time.time() - t0, 1)} s) that reran the DP baseline with the "
            "same code and settings and got an identical curve; the other variants and "
            "federated_lora are from the earlier full run, whose time is 'seconds'."
        )
        out["notes"] = [*previous.get("notes", []), note]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"best {best} x{out['byte_reduction']}; lora x{lora['byte_ratio_full_over_lora']} "
        f"({out['seconds']} s) -> {RESULTS}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", help="comma-separated variant labels to rerun and merge")
    args = parser.parse_args()
    main(args.only.split(",") if args.only else None)
