"""The Ray backend: a round's training shards on Ray workers, the same results."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from deai.sim.backends import ShardedTrainer, shard_plan
from deai.sim.runner import Backend, run_scenario
from deai.sim.scenario import parse_scenario


def _scenario(n: int = 24, rounds: int = 3) -> Any:
    return parse_scenario(
        {
            "name": "ray-parity",
            "seed": 5,
            "rounds": rounds,
            "model": {"name": "mlp", "hidden": [32]},
            "algorithm": {"name": "fedavg", "epochs": 1, "batch_size": 16, "lr": 0.1},
            "simulation": {
                "data": {"dataset": "digits", "partition": "dirichlet", "min_examples": 2},
                "nodes": [{"role": "provider", "count": n}, {"role": "validator"}],
            },
        }
    )


@pytest.mark.parametrize(("n", "k"), [(0, 2), (1, 2), (5, 2), (10, 3), (7, 7), (3, 8)])
def test_the_shard_plan_covers_every_request_once_in_order(n: int, k: int) -> None:
    plan = shard_plan(n, k)
    covered = [i for a, b in plan for i in range(a, b)]
    assert covered == list(range(n))
    assert len(plan) <= k
    if plan:
        sizes = [b - a for a, b in plan]
        assert max(sizes) - min(sizes) <= 1


def test_local_shards_agree_with_one_batch_up_to_rounding() -> None:
    s = _scenario()
    one = run_scenario(s)
    two = run_scenario(s, backend=Backend("local", 2))
    assert one.final_params is not None and two.final_params is not None
    assert torch.allclose(one.final_params, two.final_params, atol=1e-5)
    assert [o.accepted for o in one.outcomes] == [o.accepted for o in two.outcomes]
    assert isinstance(Backend("local", 2).trainer(one.spec), ShardedTrainer)


@pytest.fixture()
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_with_two_workers_gives_the_local_backends_model_hash(local_ray: None) -> None:
    s = _scenario()
    local = run_scenario(s, backend=Backend("local", 2))
    remote = run_scenario(s, backend=Backend("ray", 2))
    assert remote.metrics["backend"]["remote_shards"] >= 2 * s.rounds  # it did go remote
    assert local.metrics["backend"]["remote_shards"] == 0
    assert remote.metrics["final_model_hash"] == local.metrics["final_model_hash"]
    assert remote.metrics["total_bytes"] == local.metrics["total_bytes"]
    assert [r["accuracy"] for r in remote.metrics["rounds"]] == [
        r["accuracy"] for r in local.metrics["rounds"]
    ]
