"""The role contract: what a role may ask of its runtime, the role base class, the
requester, and helpers every party computes the same way (the round's participants,
gossip weights, the model a spec describes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

import numpy as np
from torch import Tensor

from deai.compression.base import Encoded
from deai.errors import InvalidMessage
from deai.learning.models import build_model
from deai.learning.params import FlatModel, vector_from_bytes, vector_hash
from deai.learning.topology import edges, neighbours
from deai.learning.train import TrainRequest, TrainResult
from deai.node.job import JobSpec, UpdatePolicy, derive_seed
from deai.node.messages import (
    JobResult,
    Message,
    OpenJob,
)


class NodeContext(Protocol):
    """What a role may do: the runtime's side of the contract."""

    node_id: str

    def now(self) -> float: ...

    def send(self, to: str, msg: Message) -> None: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None: ...

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None: ...


class Encoder(Protocol):
    """What a provider encodes its update with: a codec, or a codec with error feedback."""

    def encode(self, vector: Tensor) -> Encoded: ...


class Role:
    """Base: dispatches each message type to ``on_<kind>`` if the role defines it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._ctx: NodeContext | None = None

    @property
    def ctx(self) -> NodeContext:
        if self._ctx is None:
            raise RuntimeError(f"role on {self.node_id} is not attached to a runtime")
        return self._ctx

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    def start(self) -> None:
        """Called once when the runtime starts."""

    def handle(self, sender: str, msg: Message) -> None:
        handler = getattr(self, f"on_{msg.kind}", None)
        if handler is not None:
            handler(sender, msg)


def model_for(spec: JobSpec) -> FlatModel:
    """Every party builds the same initial model from the spec's seed."""
    return FlatModel(build_model(spec.model, spec.input_shape, spec.num_classes, spec.seed))


def participants(spec: JobSpec, round_: int) -> tuple[str, ...]:
    """Providers drawn for a round: all, or a seeded sample anyone can recompute."""
    p = spec.algorithm.participation
    if p >= 1.0:
        return spec.providers
    k = max(1, math.ceil(p * len(spec.providers)))
    rng = np.random.default_rng(derive_seed(spec.seed, spec.job_id, "participants", round_))
    pick = sorted(rng.choice(len(spec.providers), size=k, replace=False).tolist())
    return tuple(spec.providers[i] for i in pick)


@lru_cache(maxsize=256)
def _gossip_graph(spec_hash: str, topology: str, n: int, round_: int, seed: int) -> list[list[int]]:
    from deai.learning.topology import TopologyName

    return neighbours(edges(TopologyName(topology), n, round_, seed), n)


def gossip_weights(spec: JobSpec, spec_hash: str, j: int, round_: int) -> dict[int, float]:
    """Row ``j`` of the Metropolis–Hastings matrix for ``round_`` (self weight included)."""
    nb = _gossip_graph(spec_hash, spec.algorithm.topology, len(spec.providers), round_, spec.seed)
    row = {k: 1.0 / (1.0 + max(len(nb[j]), len(nb[k]))) for k in nb[j]}
    row[j] = 1.0 - sum(row.values())
    return row


def open_spec(msg: OpenJob) -> JobSpec:
    spec = JobSpec.from_json(msg.spec_json)
    if spec.spec_hash() != msg.spec_hash or spec.job_id != msg.job_id:
        raise InvalidMessage("job spec does not match its hash or job id")
    return spec


class Requester(Role):
    """Opens a job and receives the trained model."""

    def __init__(self, node_id: str, spec: JobSpec) -> None:
        super().__init__(node_id)
        self.spec = spec
        self.result: Tensor | None = None
        self.result_hash: str | None = None

    def start(self) -> None:
        msg = OpenJob(self.spec.job_id, self.spec.to_json(), self.spec.spec_hash())
        for node in dict.fromkeys(self.spec.validators + self.spec.providers):
            self.ctx.send(node, msg)

    def on_job_result(self, sender: str, msg: JobResult) -> None:
        if sender not in self.spec.validators or msg.job_id != self.spec.job_id:
            return
        params = vector_from_bytes(msg.model, model_for(self.spec).dim)
        if vector_hash(params) != msg.model_hash:
            return  # a corrupted or forged result is ignored; another validator may send one
        self.result, self.result_hash = params, msg.model_hash


def param_policy(spec: JobSpec) -> UpdatePolicy:
    # parameters (not updates) are bounded far more loosely than updates
    return UpdatePolicy(max_norm=spec.policy.max_norm * 1e3, max_examples=spec.policy.max_examples)
