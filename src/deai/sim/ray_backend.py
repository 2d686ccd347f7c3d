"""The Ray backend: a flush's training shards run on Ray workers, one per shard.

Everything else (the event loop, the roles, byte counting, validation) stays in the
driver process; only :func:`deai.learning.train.train_local` runs remotely, on the job's
model rebuilt on each worker from the spec (``model_for(spec)``: every party builds the
same model from the spec, workers included). Workers run one torch thread, as the local
backend does, so a shard computes the same floats on either side.

Connect to a real cluster by its address (``ray.init(address=...)``): ``simulate(...,
backend="ray", ray_address="ray://head:10001")``, or ``"auto"`` on a cluster node; the
default starts a local Ray instance with ``workers`` CPUs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from deai.errors import ConfigError
from deai.job.spec import JobSpec
from deai.learning.params import FlatModel
from deai.learning.train import TrainRequest, TrainResult, train_local
from deai.node.base import model_for
from deai.sim.backends import ShardedTrainer


@lru_cache(maxsize=4)
def _worker_model(spec_json: str) -> FlatModel:
    import torch

    torch.set_num_threads(1)
    return model_for(JobSpec.from_json(spec_json))


def _train_shard(spec_json: str, requests: list[TrainRequest]) -> list[TrainResult]:
    return train_local(_worker_model(spec_json), requests)


class RayShards:
    """Runs a flush's shards as Ray tasks (one CPU each) and gathers them in order."""

    def __init__(self, spec: JobSpec, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:  # an optional extra
            raise ConfigError(
                "backend 'ray' needs Ray: pip install 'deai[ray]' (or pip install ray)"
            ) from e
        self.ray = ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False, **kw)
        self.model = model_for(spec)
        self.spec_ref = ray.put(spec.to_json())
        self.task = ray.remote(num_cpus=1)(_train_shard)
        self.tasks = 0  # shards run on workers

    def __call__(
        self, model: FlatModel, parts: list[list[TrainRequest]]
    ) -> list[list[TrainResult]]:
        if model is not self.model:  # not the job's model: train it here
            return [train_local(model, p) for p in parts]
        refs = [self.task.remote(self.spec_ref, p) for p in parts]
        self.tasks += len(refs)
        out: list[list[TrainResult]] = self.ray.get(refs)
        return out


def ray_trainer(spec: JobSpec, workers: int, address: str | None = None) -> ShardedTrainer:
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    return ShardedTrainer(workers, RayShards(spec, workers, address))
