"""Privacy-plane measurements -> benchmarks/results/privacy.json.

    .venv/bin/python benchmarks/privacy.py [--quick]

1. Secure aggregation: bytes a client sends (÷ its plain 16-bit update) and time, for
   n in {10, 50, 100} and drop-out rate in {0, 10%, 30%} (drop-outs after key sharing,
   the costly case: their mask keys must be reconstructed), d = 2^20 as in Bonawitz et al.
2. User-level DP-FedAvg on digits split over 20 providers: accuracy and epsilon per round.
3. Loss-threshold membership inference AUC without DP and with DP-SGD at eps = 4.
4. DLG gradient inversion: clean gradient vs DP-noised vs secure sum of 10.
5. Group-wise secure aggregation: robustness error vs group size (privacy).
Everything is seeded; one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from deai.aggregation.base import Aggregate, RoundContext
from deai.errors import BudgetExhausted
from deai.privacy.accounting import (
    AccountantKind,
    PrivacyAccountant,
    PrivacyBudget,
    calibrate_noise,
)
from deai.privacy.dp_fedavg import DPFedAvgConfig, finalize_sum, privatize_client_update
from deai.privacy.dp_sgd import DPSGDConfig, train_dp_sgd
from deai.privacy.groupwise import GroupwiseConfig, groupwise_aggregate
from deai.privacy.measure import (
    DLGConfig,
    dlg_attack,
    gradient_of,
    membership_auc,
    reconstruction_mse,
)
from deai.privacy.secagg import (
    DropoutPlan,
    SecAggAborted,
    SecAggConfig,
    Stage,
    run_secagg_inprocess,
)

OUT = Path(__file__).parent / "results" / "privacy.json"


def bench_secagg(dim: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    grid = [(n, None) for n in (10, 50, 100)] + [(100, 40)]
    for n, degree in grid:
        t = n // 2 + 1 if degree is None else degree // 2 + 1
        cfg = SecAggConfig(
            n_clients=n, threshold=t, dim=dim, clip=1.0, value_bits=16, degree=degree
        )
        x = torch.rand(n, dim, generator=torch.Generator().manual_seed(n)) * 2 - 1
        for rate in (0.0, 0.1, 0.3):
            if degree is not None and rate == 0.3:
                continue
            plan = DropoutPlan.random(n, rate, Stage.MASKED_INPUT, seed=n)
            row: dict[str, object] = {
                "n": n,
                "dim": dim,
                "dropout_rate": rate,
                "threshold": t,
                "variant": "secagg" if degree is None else f"secagg+ (k={degree})",
                "modulus_bits": cfg.bits,
            }
            t0 = time.perf_counter()
            try:
                run = run_secagg_inprocess(cfg, x, plan, seed=1)
            except SecAggAborted as e:
                row["aborted"] = str(e)
                rows.append(row)
                continue
            wall = time.perf_counter() - t0
            surv = list(run.output.survivors)
            live = [run.bytes_sent[u] for u in surv]
            err = float((run.output.vector - x[surv].sum(0)).abs().max())
            row.update(
                survivors=len(surv),
                bytes_per_client_mean=float(np.mean(live)),
                expansion_vs_16bit=float(np.mean(live)) / (2 * dim),
                expansion_vs_16bit_max=float(max(live)) / (2 * dim),
                client_seconds_mean=float(np.mean([run.client_seconds[u] for u in surv])),
                server_seconds=run.server_seconds,
                wall_seconds=wall,
                max_abs_error_of_sum=err,
                error_bound=len(surv) * cfg.fixed_point.step / 2,
            )
            print("secagg", row, flush=True)
            rows.append(row)
    return rows


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    return torch.tensor(x[perm] / 16.0, dtype=torch.float32), torch.tensor(y[perm])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def bench_dp_fedavg(rounds: int) -> list[dict[str, object]]:
    """FedAvg of a linear model over 20 digit providers, Poisson participation q = 0.5."""
    x, y = _digits()
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    shards = np.array_split(np.arange(1400), 20)
    q, clip, delta = 0.5, 1.0, 1e-3
    out: list[dict[str, object]] = []
    for z in (0.0, 0.5, 1.0, 2.0):
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        rng = np.random.default_rng(0)
        gen = torch.Generator().manual_seed(1)
        acc = PrivacyAccountant(AccountantKind.RDP)
        budget = PrivacyBudget(50.0, delta)
        cfg = DPFedAvgConfig(clip=clip, noise_multiplier=z, expected_clients=q * 20)
        eps_trace: list[float] = []
        stopped = ""
        for _ in range(rounds):
            if z > 0:
                try:
                    eps_trace.append(acc.charge(budget, z, q, 1))
                except BudgetExhausted as e:
                    stopped = str(e)
                    break
            g = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
            total = torch.zeros_like(g)
            for shard in shards:
                if rng.random() >= q:
                    continue
                local = nn.Linear(64, 10)
                torch.nn.utils.vector_to_parameters(g.clone(), local.parameters())
                opt = torch.optim.SGD(local.parameters(), lr=0.5)
                for _ in range(5):
                    opt.zero_grad()
                    nn.functional.cross_entropy(local(xtr[shard]), ytr[shard]).backward()
                    opt.step()
                delta_w = torch.nn.utils.parameters_to_vector(local.parameters()).detach() - g
                total += privatize_client_update(delta_w, cfg, gen).vector
            new = g + finalize_sum(total, cfg, gen)
            torch.nn.utils.vector_to_parameters(new, model.parameters())
        row: dict[str, object] = {
            "noise_multiplier": z,
            "rounds_run": len(eps_trace) if z > 0 else rounds,
            "sample_rate": q,
            "clip": clip,
            "delta": delta,
            "epsilon_per_round": [round(e, 3) for e in eps_trace],
            "final_epsilon": eps_trace[-1] if eps_trace else (math.inf if z == 0 else 0.0),
            "test_accuracy": _accuracy(model, xte, yte),
        }
        if stopped:
            row["stopped"] = stopped
        print("dp_fedavg", {k: v for k, v in row.items() if k != "epsilon_per_round"}, flush=True)
        out.append(row)
    return out


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def bench_mia(epochs: int) -> dict[str, object]:
    x, y = _digits()
    mem, non, test = (x[:200], y[:200]), (x[200:400], y[200:400]), (x[400:], y[400:])
    plain = _mlp(0)
    opt = torch.optim.Adam(plain.parameters(), lr=0.01)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(plain(mem[0]), mem[1]).backward()
        opt.step()
    out: dict[str, object] = {
        "members": 200,
        "nonmembers": 200,
        "no_dp": {"auc": membership_auc(plain, mem, non), "test_accuracy": _accuracy(plain, *test)},
    }
    for eps in (1.0, 4.0, 8.0):
        budget = PrivacyBudget(eps, 1e-5)
        batch = 20
        steps = epochs * (200 // batch)
        z = calibrate_noise(budget, batch / 200, steps)
        cfg = DPSGDConfig(
            noise_multiplier=z, max_grad_norm=1.0, batch_size=batch, epochs=epochs, lr=0.5
        )
        res = train_dp_sgd(_mlp(0), *mem, cfg, seed=0)
        model = _mlp(0)
        torch.nn.utils.vector_to_parameters(res.parameters, model.parameters())
        acct = PrivacyAccountant()
        acct.step(res.noise_multiplier, res.sample_rate, res.steps)
        out[f"eps_{eps:g}"] = {
            "noise_multiplier": z,
            "steps": res.steps,
            "epsilon_spent": acct.epsilon(1e-5),
            "auc": membership_auc(model, mem, non),
            "test_accuracy": _accuracy(model, *test),
        }
        print("mia", eps, out[f"eps_{eps:g}"], flush=True)
    return out


def bench_dlg() -> dict[str, float]:
    x, y = _digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10))
    cfg = DLGConfig(iterations=20)
    target = x[0]
    grads = gradient_of(model, x[:1], y[:1])
    flat = torch.cat([g.reshape(-1) for g in grads])
    clip, z = 0.5, 1.0
    noisy = flat * min(1.0, clip / float(flat.norm()))
    noisy = noisy + torch.randn(flat.shape, generator=torch.Generator().manual_seed(0)) * z * clip
    parts, i = [], 0
    for g in grads:
        parts.append(noisy[i : i + g.numel()].reshape(g.shape))
        i += g.numel()
    summed = [g * 10 for g in gradient_of(model, x[:10], y[:10])]
    rec_sum = dlg_attack(model, summed, (64,), cfg).x
    return {
        "mse_clean_gradient": reconstruction_mse(dlg_attack(model, grads, (64,), cfg).x, target),
        "mse_dp_clip0.5_z1": reconstruction_mse(dlg_attack(model, parts, (64,), cfg).x, target),
        "mse_secure_sum_of_10_best_match": min(
            reconstruction_mse(rec_sum, x[i]) for i in range(10)
        ),
        "mse_guess_dataset_mean": reconstruction_mse(x[1:].mean(0), target),
    }


def _median(
    updates: torch.Tensor, weights: torch.Tensor, ctx: RoundContext | None = None
) -> Aggregate:
    """Coordinate-wise median over group means (a stand-in robust rule)."""
    return Aggregate(updates.median(dim=0).values)


def bench_groupwise() -> list[dict[str, object]]:
    n, d = 30, 32
    gen = torch.Generator().manual_seed(0)
    honest = 0.1 + 0.05 * torch.randn(n, d, generator=gen)

    rows: list[dict[str, object]] = []
    for f in (3, 6):
        updates = honest.clone()
        updates[:f] = 0.9  # attackers push every coordinate to the clip bound
        truth = honest[f:].mean(0)
        for s in (1, 2, 3, 5, 10):
            res = groupwise_aggregate(updates, _median, GroupwiseConfig(group_size=s, seed=3))
            spoiled = sum(1 for g in res.groups if any(i < f for i in g))
            rows.append(
                {
                    "attackers": f,
                    "group_size": s,
                    "groups": len(res.groups),
                    "spoiled_groups": spoiled,
                    "error_l2": float((res.aggregate.vector - truth).norm()),
                    "anonymity_set": s,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="d = 2^14 and fewer rounds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dim = 1 << (14 if args.quick else 20)
    t0 = time.perf_counter()
    secagg = bench_secagg(dim)
    fed = bench_dp_fedavg(10 if args.quick else 40)
    mia = bench_mia(10 if args.quick else 30)
    dlg = bench_dlg()
    group = bench_groupwise()
    full100 = [
        r for r in secagg if r["n"] == 100 and r["variant"] == "secagg" and "aborted" not in r
    ]
    result = {
        "mia_auc_at_eps4": mia["eps_4"]["auc"],  # type: ignore[index]
        "secagg_expansion_n100": max(float(r["expansion_vs_16bit"]) for r in full100),  # type: ignore[arg-type]
        "goals": {"mia_auc_at_eps4": "<= 0.55", "secagg_expansion_n100": "<= 1.5 (Bonawitz: 1.73)"},
        "secure_aggregation": secagg,
        "dp_fedavg_digits_20_providers": fed,
        "membership_inference": mia,
        "dlg": dlg,
        "groupwise": group,
        "meta": {
            "quick": args.quick,
            "seconds": time.perf_counter() - t0,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": 1,
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(
        f"wrote {OUT}: mia_auc_at_eps4={result['mia_auc_at_eps4']:.3f} "
        f"secagg_expansion_n100={result['secagg_expansion_n100']:.3f}"
    )


if __name__ == "__main__":
    main()
