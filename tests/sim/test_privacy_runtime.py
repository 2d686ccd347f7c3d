"""DP-FedAvg in the runtime: epsilon is reported every round, never exceeds the budget,
and training stops with a clear message before a round would exceed it."""

from deai.sim.runner import run_scenario
from deai.sim.scenario import parse_scenario


def _run(epsilon: float, secure: bool) -> dict:
    return run_scenario(
        parse_scenario(
            {
                "rounds": 8,
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
    ).metrics


def test_budget_is_never_exceeded_and_stops_training() -> None:
    m = _run(epsilon=6.0, secure=False)
    eps = [r["epsilon"] for r in m["rounds"]]
    assert 1 <= len(eps) < 8  # stopped early
    assert eps == sorted(eps) and eps[-1] <= 6.0
    assert m["stopped"] and "privacy budget" in m["stopped"]
    assert m["final_model_hash"] is not None  # the model so far is still delivered


def test_secure_aggregation_job_reports_epsilon() -> None:
    m = _run(epsilon=100.0, secure=True)
    assert len(m["rounds"]) == 8 and m["stopped"] is None
    assert m["privacy"]["epsilon_spent"] > 0
    assert m["secagg_aborts"] == []
    assert all(r["accepted"] >= 3 for r in m["rounds"])
