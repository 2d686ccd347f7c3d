"""Cross-device populations: a cohort per round, providers built when first drawn."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deai.errors import ConfigError
from deai.node.base import participants
from deai.sim.population import cohort_participation
from deai.sim.runner import plan, run_scenario
from deai.sim.scenario import parse_scenario


def _scenario(n: int, rounds: int = 3, cohort: int | None = 8, **sim: Any) -> Any:
    algorithm: dict[str, Any] = {"name": "fedavg", "epochs": 1, "batch_size": 8, "lr": 0.1}
    section: dict[str, Any] = {
        "data": {
            "dataset": "synthetic",
            "n_samples": 10 * n,
            "n_features": 8,
            "n_classes": 4,
            "partition": "iid",
            "min_examples": 1,
        },
        "nodes": [{"role": "provider", "count": n}, {"role": "validator"}],
        **sim,
    }
    if cohort is not None:
        section["cohort"] = cohort
    return parse_scenario(
        {
            "name": "population",
            "seed": 1,
            "rounds": rounds,
            "model": {"name": "mlp", "hidden": [8]},
            "algorithm": algorithm,
            "simulation": section,
        }
    )


@pytest.mark.parametrize(("cohort", "n"), [(1000, 100_000), (7, 300), (3, 10), (10, 10)])
def test_the_cohort_share_draws_exactly_the_cohort(cohort: int, n: int) -> None:
    import math

    p = cohort_participation(cohort, n)
    assert max(1, math.ceil(p * n)) == cohort


def test_each_round_draws_the_cohort_and_only_the_drawn_are_built() -> None:
    s = _scenario(200, rounds=4, cohort=8)
    pl = plan(s)
    r = run_scenario(s)
    m = r.metrics
    drawn = {p for k in range(1, 5) for p in participants(pl.spec, k)}
    assert all(len(participants(pl.spec, k)) == 8 for k in range(1, 5))
    assert [x["accepted"] for x in m["rounds"]] == [8, 8, 8, 8]
    assert [set(o.accepted) for o in r.outcomes] == [
        set(participants(pl.spec, k)) for k in range(1, 5)
    ]
    assert m["providers_built"] == len(drawn) < 200
    # every built provider got the job once, at check-in; nobody else did
    assert m["bytes_by_kind"]["open_job"] > 0
    assert r.final_params is not None and bool(torch.isfinite(r.final_params).all())


def test_a_cohort_run_trains_like_the_same_draw_with_every_provider_built() -> None:
    """Lazy providers change when nodes exist and how the job reaches them, not what
    they compute: the same public draw, the same updates accepted, the same model."""
    lazy = _scenario(60, rounds=3, cohort=6)
    share = plan(lazy).spec.algorithm.participation
    eager = _scenario(60, rounds=3, cohort=None)
    eager = eager.model_copy(
        update={"algorithm": eager.algorithm.model_copy(update={"participation": share})}
    )
    a, b = run_scenario(lazy), run_scenario(eager)
    assert [o.accepted for o in a.outcomes] == [o.accepted for o in b.outcomes]
    assert all(len(o.accepted) == 6 for o in a.outcomes)
    assert a.metrics["bytes_by_kind"]["update"] == b.metrics["bytes_by_kind"]["update"]
    assert a.final_params is not None and b.final_params is not None
    assert torch.allclose(a.final_params, b.final_params, atol=1e-5)
    assert a.metrics["providers_built"] < b.metrics["providers_built"] == 60


def test_the_population_is_capped_by_the_memory_estimate_stated() -> None:
    with pytest.raises(ConfigError, match="memory_gb") as e:
        plan(_scenario(2_000, cohort=None, memory_gb=0.6))
    assert "GB" in str(e.value) and "simulation.cohort" in str(e.value)
    plan(_scenario(2_000, cohort=10, memory_gb=0.6))  # the same population, a cohort: fits


def test_a_cohort_with_explicit_participation_or_larger_than_the_population_fails() -> None:
    with pytest.raises(ConfigError, match="more than"):
        plan(_scenario(10, cohort=11))
    s = _scenario(20, cohort=5)
    s2 = s.model_copy(update={"algorithm": s.algorithm.model_copy(update={"participation": 0.5})})
    with pytest.raises(ConfigError, match="participation"):
        plan(s2)
