"""Verification plane benchmark -> benchmarks/results/verification.json.

Measures, with real models (an MLP on sklearn digits) and the real protocol code:

* false slashes over 10,000 honest tasks, each cross-checked by three honest workers that
  run different thread counts and batch splits (tolerant fingerprints);
* for every cheating strategy, the chance that a check of its task catches it, and
  Monte Carlo detection within 100 tasks under the secret sampler;
* detection probability against sampling rate and number of tasks;
* compute overhead of sampling (extra executions per useful one, and wall clock);
* the minimum stake and each strategy's expected profit at that stake.

Run: ``python benchmarks/verification.py [--quick]`` (a few minutes; ``--quick`` for a smoke).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits

from deai.verification import economics as econ
from deai.verification import pol
from deai.verification.commit_reveal import (
    InMemoryTaskSettlement,
    Outcome,
    result_commitment,
    unbound_commitment,
)
from deai.verification.determinism import deterministic
from deai.verification.fingerprint import calibrate, distance, fingerprint
from deai.verification.protocol import (
    CrossCheckConfig,
    FingerprintStore,
    cross_check,
    run_inference,
    run_training,
)
from deai.verification.sampling import SecretSampler
from deai.verification.tasks import (
    Behaviour,
    ExecutionEnv,
    InferenceTask,
    ModelSpec,
    TrainingTask,
    Worker,
    forward,
    train_steps,
)

OUT = Path(__file__).parent / "results" / "verification.json"
SPEC = ModelSpec()
K = 3  # workers per checked task
ESCALATION = 5  # fresh workers that resolve a split verdict
RATE = 0.047  # sampling rate; required_rate(0.99, 100) = 0.0450 for a lone cheater
ATTACKER_SHARE = 0.05  # share of the pool held by the colluding cartel
FEE = 1.25  # fee per task, in units of one honest execution
ROWS = 4  # inputs per inference task
STRATEGY_COST = {  # compute per task in honest-execution units
    Behaviour.RANDOM_OUTPUT: 0.0,
    Behaviour.STALE_OUTPUT: 0.0,
    Behaviour.SMALLER_MODEL: 0.5,  # half the hidden units: half the MACs
    Behaviour.QUANTIZED_MODEL: 0.25,  # nominal int8 vs fp32 throughput
    Behaviour.COPY: 0.0,
    Behaviour.COLLUDE: 0.0,
    Behaviour.SKIPPED_STEPS: 0.5,  # every other step
    Behaviour.PARTIAL_TRAINING: 0.5,  # first half of the segments
}
TRAINING = {Behaviour.SKIPPED_STEPS, Behaviour.PARTIAL_TRAINING}


def addr(i: int) -> str:
    return "0x" + f"{i:040x}"


def setup() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    d = load_digits()
    x = torch.tensor(d.data / 16, dtype=torch.float32)
    y = torch.tensor(d.target)
    models = []
    for seed, steps in [(0, 100), (1, 150), (2, 200), (3, 60)]:
        t = TrainingTask(
            SPEC,
            SPEC.init_params(seed),
            x[:1024],
            y[:1024],
            steps=steps,
            batch_size=32,
            lr=0.5,
            seed=seed,
            checkpoint_every=steps,
        )
        models.append(train_steps(t, t.params, 0, steps, ExecutionEnv()))
    return x, y, models


def make_tasks(
    x: torch.Tensor, models: list[torch.Tensor], n: int, seed: int
) -> list[InferenceTask]:
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, x.shape[0], (n, ROWS), generator=gen)
    return [
        InferenceTask(SPEC, models[i % len(models)], x[rows[i]], nonce=seed * 10**6 + i)
        for i in range(n)
    ]


def batched_outputs(tasks: list[InferenceTask], threads: int, chunk: int) -> list[torch.Tensor]:
    """Honest outputs computed in batches of ``chunk`` rows that span tasks of one model."""
    outs: list[torch.Tensor | None] = [None] * len(tasks)
    for m in {id(t.params): t.params for t in tasks}.values():
        idx = [i for i, t in enumerate(tasks) if t.params is m]
        model = SPEC.build(m)
        with deterministic(0, threads):
            y = forward(
                model, torch.cat([tasks[i].inputs for i in idx]), ExecutionEnv(threads, chunk)
            )
        for j, i in enumerate(idx):
            outs[i] = y[j * ROWS : (j + 1) * ROWS]
    return [o for o in outs if o is not None]


def calibration(x: torch.Tensor, models: list[torch.Tensor]) -> dict[str, Any]:
    envs = [
        ExecutionEnv(1),
        ExecutionEnv(2),
        ExecutionEnv(1, 16),
        ExecutionEnv(2, 16),
        ExecutionEnv(1, 1),
        ExecutionEnv(1, 7),
    ]
    runs_per_model = []
    for m in models:
        task = InferenceTask(SPEC, m, x[1200:1456])  # held out from the honest tasks' seed
        runs_per_model.append([Worker(addr(1), env=e).infer(task) for e in envs])
    eps = max(float((r - runs[0]).abs().max()) for runs in runs_per_model for r in runs)
    cfg = calibrate([torch.stack(r) for r in zip(*runs_per_model, strict=True)])
    return {"config": cfg, "eps_max": eps}


def honest_false_slashes(
    x: torch.Tensor, models: list[torch.Tensor], n: int, cfg: Any
) -> dict[str, Any]:
    tasks = make_tasks(x, models, n, seed=1)
    t0 = time.perf_counter()
    per_task = [Worker(addr(1), env=ExecutionEnv(1)).infer(t) for t in tasks]
    t_primary = time.perf_counter() - t0
    two_threads = batched_outputs(tasks, threads=2, chunk=256)
    one_row = batched_outputs(tasks, threads=1, chunk=1)
    workers = [Worker(addr(i), secret=bytes([i]), env=ExecutionEnv(i)) for i in (1, 2, 3)]
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(cfg)
    settlement.match = store.match
    slashes = refunds = bit_exact = 0
    max_dist = 0.0
    for t, a, b, c in zip(tasks, per_task, two_threads, one_row, strict=True):
        outs = {workers[0].address: a, workers[1].address: b, workers[2].address: c}
        rep = cross_check(t, workers, outs, settlement, store, CrossCheckConfig())
        slashes += len(rep.settlement.slashed)
        refunds += rep.settlement.verdict.outcome is Outcome.REFUNDED
        bit_exact += bool(torch.equal(a, b) and torch.equal(a, c))
        fa, fc = fingerprint(a, cfg), fingerprint(c, cfg)
        max_dist = max(max_dist, distance(fa, fc), distance(fa, fingerprint(b, cfg)))
    return {
        "honest_tasks": n,
        "false_slashes": slashes,
        "refunds": refunds,
        "bit_exact_fraction": bit_exact / n,
        "max_honest_distance": max_dist,
        "tolerance": cfg.tolerance + cfg.step,
        "margin": (cfg.tolerance + cfg.step) / max(max_dist, 1e-30),
        "primary_seconds_per_task": t_primary / n,
        "envs": ["threads=1 per task", "threads=2 batches of 256 rows", "threads=1 one row"],
    }


def cheat_distances(x: torch.Tensor, models: list[torch.Tensor], cfg: Any) -> dict[str, float]:
    task = InferenceTask(SPEC, models[1], x[1500:1564])
    honest = fingerprint(Worker(addr(1)).infer(task), cfg)
    out = {}
    for b in (Behaviour.RANDOM_OUTPUT, Behaviour.SMALLER_MODEL, Behaviour.QUANTIZED_MODEL):
        out[b.value] = distance(fingerprint(Worker(addr(2), behaviour=b).infer(task), cfg), honest)
    return out


class Pool:
    """100 workers, ATTACKER_SHARE of them in a cartel that returns one shared fake."""

    def __init__(self, size: int = 100, cartel: int = 0) -> None:
        envs = [ExecutionEnv(1), ExecutionEnv(1, 1), ExecutionEnv(1, 3)]
        self.workers = [
            Worker(
                addr(1000 + i),
                Behaviour.COLLUDE if i < cartel else Behaviour.HONEST,
                envs[i % 3],
                secret=bytes([i % 256]),
                collusion_key=b"cartel",
            )
            for i in range(size)
        ]
        self.gen = torch.Generator().manual_seed(5)

    def draw(self, n: int, exclude: set[str]) -> list[Worker]:
        free = [w for w in self.workers if w.address not in exclude]
        return [free[int(i)] for i in torch.randperm(len(free), generator=self.gen)[:n]]


def detection_trials(
    behaviour: Behaviour,
    x: torch.Tensor,
    y: torch.Tensor,
    models: list[torch.Tensor],
    cfg: Any,
    trials: int,
    horizon: int,
) -> dict[str, Any]:
    """``trials`` cheaters, each cheating on up to ``horizon`` tasks under a fresh secret
    sampler; a checked task runs the real cross-check or PoL audit."""
    cartel = round(ATTACKER_SHARE * 100) if behaviour is Behaviour.COLLUDE else 0
    pool = Pool(cartel=cartel)
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(cfg)
    settlement.match = store.match
    checked = caught = detected_within = 0
    gen = torch.Generator().manual_seed(9)
    for trial in range(trials):
        sampler = SecretSampler(RATE, secret=trial.to_bytes(32, "big") + behaviour.value.encode())
        cheat = (
            pool.workers[0]
            if behaviour is Behaviour.COLLUDE
            else Worker(addr(10 + trial), behaviour, secret=b"c")
        )
        if behaviour is Behaviour.STALE_OUTPUT:  # it has served one task before this run
            cheat.infer(InferenceTask(SPEC, models[0], x[:ROWS], nonce=10**9 + trial))
        for i in range(horizon):
            nonce = trial * 1000 + i
            if behaviour in TRAINING:
                rows = torch.randint(0, 1024, (64,), generator=gen)
                t = TrainingTask(
                    SPEC,
                    models[i % 4],
                    x[rows],
                    y[rows],
                    steps=40,
                    batch_size=8,
                    lr=0.05,
                    seed=nonce,
                    checkpoint_every=5,
                    nonce=nonce,
                )
                if not sampler.is_checked(t.task_id):
                    continue
                rep = run_training(t, cheat, settlement, checked=True, validator_seed=nonce)
                hit = cheat.address in rep.settlement.slashed
            else:
                rows = torch.randint(0, 1024, (ROWS,), generator=gen)
                t = InferenceTask(SPEC, models[i % 4], x[rows], nonce=nonce)
                if behaviour is Behaviour.STALE_OUTPUT:
                    cheat.infer(t)  # keeps its cache current on unchecked tasks too
                if not sampler.is_checked(t.task_id):
                    continue
                checkers = pool.draw(K - 1, {cheat.address})
                committee = (
                    [checkers[0], cheat, checkers[1]]
                    if behaviour is Behaviour.COPY
                    else [cheat, *checkers]
                )
                taken = {w.address for w in committee}
                rep = run_inference(
                    t,
                    committee,
                    settlement,
                    store,
                    CrossCheckConfig(),
                    lambda n, taken=taken: pool.draw(n, taken),
                )
                hit = cheat.address in rep.settlement.slashed
            checked += 1
            caught += hit
            if hit:
                detected_within += 1
                break
    return {
        "trials": trials,
        "checked_tasks": checked,
        "caught": caught,
        "catch_rate": caught / max(checked, 1),
        "detected_within_horizon": detected_within / trials,
    }


def overhead(x: torch.Tensor, models: list[torch.Tensor], n: int, cfg: Any) -> dict[str, Any]:
    """Extra executions and wall clock of sampled cross-checking over ``n`` honest tasks."""
    tasks = make_tasks(x, models, n, seed=2)
    sampler = SecretSampler(RATE, secret=b"overhead".ljust(32, b"\x00"))
    pool = Pool()
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(cfg)
    settlement.match = store.match
    ids = itertools.count()
    useful = extra = 0
    t0 = time.perf_counter()
    for t in tasks:
        w = pool.workers[next(ids) % 100]
        run_inference(t, [w], InMemoryTaskSettlement(), store)  # the unverified baseline
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in tasks:
        w = pool.workers[next(ids) % 100]
        committee = [w]
        if sampler.is_checked(t.task_id):
            committee += pool.draw(K - 1, {w.address})
        rep = run_inference(
            t,
            committee,
            settlement,
            store,
            CrossCheckConfig(),
            lambda k, c=committee: pool.draw(k, {m.address for m in c}),
        )
        useful += 1
        extra += rep.executions - 1
    verified = time.perf_counter() - t0
    # the checked fraction over many more task ids (the decision is one HMAC each)
    many = 100_000
    frac = sum(sampler.is_checked(i.to_bytes(32, "big")) for i in range(many)) / many
    # training: a checked task costs a PoL replay of (replays + 1) of its segments
    segs, replays = 8, pol.PoLConfig().replays + 1
    inference = (K - 1) * frac  # no escalations happen among honest workers (measured above)
    return {
        "tasks": n,
        "checked_fraction": extra / (K - 1) / n,
        "inference_overhead_executions": extra / useful,
        "inference_overhead_wall_clock": verified / base - 1,
        "checked_fraction_100k_ids": frac,
        "inference_overhead_100k_ids": inference,
        "training_overhead_replayed_steps": frac * replays / segs,
        "overhead": max(inference, frac * replays / segs),
    }


def copy_attack(n: int = 1000) -> dict[str, float]:
    """A copier replays a victim's (result_hash, salt): opens under keccak(h|salt), never
    under keccak(h|salt|address)."""
    ok_bound = ok_unbound = 0
    for i in range(n):
        h, salt = i.to_bytes(32, "big"), (i + 7).to_bytes(32, "big")
        victim, copier = addr(1), addr(2)
        ok_unbound += unbound_commitment(h, salt) == unbound_commitment(h, salt)
        ok_bound += result_commitment(h, salt, copier) == result_commitment(h, salt, victim)
    return {"copy_success_address_bound": ok_bound / n, "copy_success_unbound": ok_unbound / n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_honest = 500 if args.quick else 10_000
    trials = {False: 300, True: 40}[args.quick]
    train_trials = {False: 60, True: 10}[args.quick]
    started = time.perf_counter()
    torch.set_num_threads(1)
    x, y, models = setup()
    cal = calibration(x, models)
    cfg = cal["config"]
    honest = honest_false_slashes(x, models, n_honest, cfg)
    print("honest", honest, flush=True)
    strategies: dict[str, Any] = {}
    for b in STRATEGY_COST:
        n = train_trials if b in TRAINING else trials
        strategies[b.value] = detection_trials(b, x, y, models, cfg, n, horizon=100)
        print(b.value, strategies[b.value], flush=True)
    over = overhead(x, models, 2000 if not args.quick else 200, cfg)
    print("overhead", over, flush=True)

    escape = {
        b.value: econ.escape_probability(ATTACKER_SHARE, K, ESCALATION)
        if b is Behaviour.COLLUDE
        else 0.0
        for b in STRATEGY_COST
    }
    p_d = {s: RATE * r["catch_rate"] * (1 - escape[s]) for s, r in strategies.items()}
    stake = 1.05 * econ.min_stake(FEE, min(p_d.values()))
    profits = {
        b.value: econ.strategy_economics(
            b.value,
            STRATEGY_COST[b],
            strategies[b.value]["catch_rate"],
            RATE,
            escape[b.value],
            FEE,
            stake,
            1.0,
        ).__dict__
        for b in STRATEGY_COST
    }
    within = {s: econ.detection_within(p, 100) for s, p in p_d.items()}
    curve = {
        f"{rate:g}": {str(n): econ.detection_within(rate, n) for n in (10, 50, 100, 200, 500)}
        for rate in (0.01, 0.02, 0.03, 0.045, RATE, 0.05, 0.1, 0.2)
    }
    result = {
        "overhead": over["overhead"],
        "detection_within_100": min(within.values()),
        "false_slashes": honest["false_slashes"],
        "honest_tasks": honest["honest_tasks"],
        "max_cheater_expected_profit": max(p["expected_profit"] for p in profits.values()),
        "config": {
            "rate": RATE,
            "k": K,
            "escalation": ESCALATION,
            "attacker_share": ATTACKER_SHARE,
            "fee": FEE,
            "rows_per_task": ROWS,
            "model": SPEC.__dict__,
            "fingerprint": cfg.__dict__,
            "pol": pol.PoLConfig().__dict__,
            "quick": args.quick,
        },
        "calibration": {
            "eps_max_entrywise": cal["eps_max"],
            "cheat_distances": cheat_distances(x, models, cfg),
        },
        "honest": honest,
        "strategies": strategies,
        "detection_within_100_by_strategy": within,
        "detection_within_100_monte_carlo": {
            s: r["detected_within_horizon"] for s, r in strategies.items()
        },
        "detection_vs_rate_and_tasks": curve,
        "stake": {
            "min_stake_formula": "f * (1 - p_d) / p_d",
            "p_d_min": min(p_d.values()),
            "stake_used": stake,
            "stake_over_fee": stake / FEE,
        },
        "expected_profit": profits,
        "overhead_detail": over,
        "copying": copy_attack(),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        },
        "seconds": time.perf_counter() - started,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        OUT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in list(result)[:5]}, indent=2))


if __name__ == "__main__":
    main()
