"""Where a flush of the engine's gathered training runs: here, or on Ray workers.

The engine hands each flush (one batched computation per model) to a trainer. A
:class:`ShardedTrainer` splits the requests, in their deterministic pending order, into
``shards`` contiguous parts and trains each part as one vmapped computation; the local
backend runs the parts one after the other, the Ray backend (:mod:`deai.sim.ray_backend`)
on Ray workers at once. The shard plan depends only on the requests and ``shards``, so
both backends compute the same thing and give the same final model hash for the same
seed and shard count. (Against one unsharded computation the results agree up to float
rounding: batched kernels may sum in another order for another batch size.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from deai.errors import ConfigError
from deai.learning.params import FlatModel
from deai.learning.train import TrainRequest, TrainResult, train_local

Trainer = Callable[[FlatModel, Sequence[TrainRequest]], list[TrainResult]]
RunShards = Callable[[FlatModel, list[list[TrainRequest]]], list[list[TrainResult]]]


def shard_plan(n: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` parts of ``n`` requests, sizes differing by at most 1."""
    if shards < 1:
        raise ConfigError(f"shards must be >= 1, got {shards}")
    bounds = np.linspace(0, n, min(shards, max(n, 1)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def run_local(model: FlatModel, parts: list[list[TrainRequest]]) -> list[list[TrainResult]]:
    return [train_local(model, part) for part in parts]


class ShardedTrainer:
    def __init__(self, shards: int = 1, run: RunShards = run_local) -> None:
        shard_plan(1, shards)  # checks shards
        self.shards = shards
        self.run = run

    def __call__(self, model: FlatModel, requests: Sequence[TrainRequest]) -> list[TrainResult]:
        reqs = list(requests)
        parts = [reqs[a:b] for a, b in shard_plan(len(reqs), self.shards)]
        if len(parts) <= 1:
            return train_local(model, reqs)
        return [r for part in self.run(model, parts) for r in part]
