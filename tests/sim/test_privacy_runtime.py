"""DP-FedAvg in the runtime: epsilon is accounted per provider without amplification (the
draw is public), recomputes exactly with Opacus from each provider's actual
participation, never exceeds the budget, and training stops with a clear message when
no provider may contribute any more."""

from typing import Any

import torch
from opacus.accountants import RDPAccountant
from scenario_kit import scenario

from deai.sim.runner import RunResult, run_scenario


def _run(epsilon: float, secure: bool, rounds: int = 8) -> RunResult:
    return run_scenario(
        scenario(
            {
                "rounds": rounds,
                "data": {"dataset": "synthetic", "partition": "iid", "n_samples": 800},
                "algorithm": {"name": "fedavg", "steps": 3, "lr": 0.2, "participation": 0.5},
                "privacy": {
                    "clip": 1.0,
                    "noise_multiplier": 1.0,
                    "epsilon": epsilon,
                    "secure_aggregation": secure,
                },
                "nodes": [{"role": "provider", "count": 10}, {"role": "validator"}],
            }
        )
    )


def _recompute(run: RunResult, delta: float) -> dict[str, float]:
    """Each provider's epsilon from the rounds its update was in, with Opacus itself."""
    out: dict[str, float] = {}
    for p in run.spec.providers:
        acc = RDPAccountant()
        for o in run.outcomes:
            if o.applied and p in o.accepted:
                assert o.privacy is not None
                acc.step(noise_multiplier=o.privacy.noise_multiplier, sample_rate=1.0)
        if acc.history:
            out[p] = acc.get_epsilon(delta)
    return out


def test_budget_is_never_exceeded_and_stops_training() -> None:
    run = _run(epsilon=12.0, secure=False)
    m: dict[str, Any] = run.metrics
    eps = [r["epsilon"] for r in m["rounds"]]
    assert 1 <= len(eps) < 8  # stopped early
    assert eps == sorted(eps) and eps[-1] <= 12.0
    assert m["stopped"] and "privacy budget" in m["stopped"]
    assert m["final_model_hash"] is not None  # the model so far is still delivered
    reported = {k: v["epsilon_public"] for k, v in m["privacy"]["per_provider"].items()}
    assert reported == _recompute(run, 1e-5)  # exactly Opacus' figure, provider by provider
    assert max(reported.values()) <= 12.0
    # without secure aggregation the validators see each update with 1/m of the noise
    assert m["privacy"]["epsilon_aggregator"] > 2 * m["privacy"]["epsilon_spent"]
    assert "without secure aggregation" in m["privacy"]["epsilon_aggregator_note"]


def test_secure_aggregation_job_reports_epsilon() -> None:
    run = _run(epsilon=100.0, secure=True)
    m = run.metrics
    assert len(m["rounds"]) == 8 and m["stopped"] is None
    assert m["privacy"]["epsilon_spent"] > 0
    assert m["privacy"]["epsilon_aggregator"] == m["privacy"]["epsilon_spent"]
    assert m["secagg_aborts"] == []
    assert all(r["accepted"] >= 3 for r in m["rounds"])
    assert m["bytes_by_kind"].get("update", 0) == 0  # no plaintext update ever sent


def _strip_ratio(secure_sum: bool = False) -> float:
    """Play the validator: with the spec and the updates it received, strip the DP noise
    with every seed derivable from public data; return the residual noise over the noise
    each update really carries (1.0: nothing stripped)."""
    import math

    from deai.job.spec import derive_seed
    from deai.learning.train import TrainRequest, train_local
    from deai.node.base import codec_seed, model_for, participants, train_seed
    from deai.privacy.dp_fedavg import clip_update, gaussian_noise
    from deai.sim.runner import execute, plan

    pl = plan(
        scenario(
            {
                "rounds": 2,
                "data": {"dataset": "synthetic", "partition": "iid", "n_samples": 400},
                "algorithm": {"name": "fedavg", "steps": 2, "lr": 0.2},
                "privacy": {"clip": 1.0, "noise_multiplier": 2.0},
                "nodes": [{"role": "provider", "count": 4}, {"role": "validator"}],
            }
        )
    )
    run = execute(pl, keep_updates=True)  # the test reads what the validator saw
    spec, model = run.spec, model_for(run.spec)
    worst = 0.0
    ratios = []
    for o in run.outcomes:
        assert o.updates is not None and o.start_params is not None
        m = len(participants(spec, o.round))
        std = 2.0 * 1.0 / math.sqrt(m)
        for row, p in zip(o.updates, o.accepted, strict=True):
            i = spec.providers.index(p)
            data = pl.splits.train.subset(pl.parts[i])
            req = TrainRequest(
                o.start_params, data.x, data.y, spec.algorithm.local(), train_seed(spec, p, o.round)
            )
            clipped = clip_update(train_local(model, [req])[0].params - o.start_params, 1.0).vector
            noise = row - clipped  # the omniscient test knows the true noise
            guesses = [torch.zeros_like(noise)]
            for seed in (
                derive_seed(spec.seed, spec.job_id, p, o.round, "dp-noise"),  # the old scheme
                derive_seed(spec.seed, p, o.round, "dp-noise"),
                train_seed(spec, p, o.round),
                codec_seed(spec, p),
                spec.seed,
            ):
                gen = torch.Generator().manual_seed(seed % 2**63)
                guesses.append(gaussian_noise(noise.shape[0], std, gen))
            best = min(float((noise - g).norm()) for g in guesses)
            ratios.append(best / float(noise.norm()))
            worst = max(worst, abs(float(noise.norm()) / (std * math.sqrt(noise.shape[0])) - 1))
    assert worst < 0.1  # the updates do carry the promised noise
    return min(ratios)


def test_the_validator_cannot_strip_the_noise() -> None:
    import torch  # noqa: F401

    assert _strip_ratio() >= 0.99
