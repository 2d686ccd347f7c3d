"""The role contract: what a role may ask of its runtime, the role base class, the
requester, and what every party computes the same way from the job spec (the model, the
round's participants, gossip weights, the codec).

Secrets: a role never derives a secret from the spec. ``NodeContext.secret_bytes`` is the
node's private randomness (the OS CSPRNG when deployed; in simulation a per-node stream
derived from a master seed that no role object holds), and DP noise, SecAgg keys and masks
come from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import numpy as np
from torch import Tensor

from deai.compression.base import Codec, Encoded
from deai.errors import InvalidMessage
from deai.job.spec import JobSpec, UpdatePolicy, derive_seed
from deai.learning.models import ModelConfig, build_model
from deai.learning.params import FlatModel, vector_from_bytes, vector_hash
from deai.learning.topology import edges, neighbours
from deai.learning.train import TrainRequest, TrainResult
from deai.node.messages import JobResult, Message, OpenJob

T = TypeVar("T")


class NodeContext(Protocol):
    """What a role may do: the runtime's side of the contract."""

    node_id: str

    def now(self) -> float: ...

    def send(self, to: str, msg: Message) -> None: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None: ...

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None: ...

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        """Run blocking work (a chain call) off the event loop; ``done(result, error)`` is
        called back on the loop. In simulation it runs at once."""
        ...

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        """``n`` bytes of this node's private randomness for ``label``."""
        ...

    def sign(self, data: bytes) -> bytes:
        """This node's identity signature over ``data`` (EIP-191, eth-account)."""
        ...

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ``node_id``'s identity signature over ``data``."""
        ...


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


def secret_seed(ctx: NodeContext, label: str) -> int:
    """A 63-bit seed from the node's secret randomness (for a torch/NumPy generator)."""
    return int.from_bytes(ctx.secret_bytes(label, 8), "little") >> 1


# ------------------------------------------------------------------- derived from the spec
def _by_spec_hash(fn: Callable[[JobSpec], T]) -> Callable[[JobSpec], T]:
    """Cache ``fn(spec)`` by the spec's (cached) hash: keying on the spec's JSON would
    serialize it on every call, which for a 100,000-provider spec is 2 MB each time."""
    cache: dict[str, T] = {}

    def cached(spec: JobSpec) -> T:
        h = spec.spec_hash()
        if h not in cache:
            if len(cache) >= 64:
                cache.pop(next(iter(cache)))
            cache[h] = fn(spec)
        return cache[h]

    return cached


@_by_spec_hash
def _model_for(spec: JobSpec) -> FlatModel:
    schema = spec.data_schema
    module = build_model(
        ModelConfig(spec.model.name, spec.model.params),
        tuple(schema.input_shape),
        schema.num_classes,
        spec.seed,
    )
    return FlatModel(module)


def model_for(spec: JobSpec) -> FlatModel:
    """Every party builds the same initial model from the spec (cached per spec; callers
    must not train the module in place: training is functional over flat vectors)."""
    return _model_for(spec)


def model_shapes(spec: JobSpec) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(s) for s in model_for(spec).shapes)


def build_codec_for(spec: JobSpec, seed: int) -> Codec:
    """The job's update codec (registry), seeded for randomized codecs."""
    from deai.registry import codecs

    codec: Codec = codecs.build(spec.codec.name, spec.codec.params, model_shapes(spec), seed)
    return codec


def codec_seed(spec: JobSpec, provider: str) -> int:
    """A provider's codec randomness (stochastic rounding, random-k): public and per
    provider, so validators decode it and providers do not round alike."""
    return derive_seed(spec.seed, provider, "codec") % 2**31


@_by_spec_hash
def _draws(spec: JobSpec) -> tuple[tuple[int, ...], ...]:
    """Every round's draw, computed once per spec (index into ``spec.providers``)."""
    n = len(spec.providers)
    k = spec.drawn_count()
    cap = participation_cap(spec)
    used = np.zeros(n, dtype=np.int64)
    out: list[tuple[int, ...]] = []
    for r in range(1, spec.rounds + 1):
        if k >= n and cap is None:
            out.append(tuple(range(n)))
            continue
        eligible = np.arange(n) if cap is None else np.flatnonzero(used < cap)
        rng = np.random.default_rng(derive_seed(spec.seed, spec.job_id, "participants", r))
        take = min(k, len(eligible))
        if cap is not None and take < spec.min_survivors():
            out.append(())  # too few providers with budget left: the job stops here
            continue
        pick = np.sort(rng.choice(eligible, size=take, replace=False)) if take < n else eligible
        used[pick] += 1
        out.append(tuple(int(i) for i in pick))
    return tuple(out)


def participants(spec: JobSpec, round_: int) -> tuple[str, ...]:
    """Providers drawn for a round: a seeded sample anyone can recompute from the spec.

    With a DP budget, a provider is drawn at most :func:`participation_cap` times (each
    time is charged without amplification, since the draw is public), so no provider's
    epsilon can pass the budget; a round with too few eligible providers draws nobody.
    """
    if round_ < 1 or round_ > spec.rounds:
        return ()
    if spec.algorithm.participation >= 1.0 and participation_cap(spec) is None:
        return spec.providers
    pick = _draws(spec)[round_ - 1]
    return tuple(spec.providers[i] for i in pick)


def participation_cap(spec: JobSpec) -> int | None:
    """How many rounds one provider may contribute to within the DP budget (None: no
    budget). Charged at the weakest noise a round may close with (``min_survivors`` of
    the drawn arriving), with no sampling amplification."""
    p = spec.privacy
    if p is None or p.epsilon is None:
        return None
    return _cap(p.noise_multiplier, p.epsilon, p.delta, spec.rounds, worst_noise_ratio(spec))


def worst_noise_ratio(spec: JobSpec) -> float:
    """A lower bound on ``sqrt(arrived / drawn)`` for every round that applies an update:
    arrivals are at least ``ceil(threshold * drawn) >= threshold * drawn``."""
    assert spec.privacy is not None
    return math.sqrt(spec.privacy.threshold)


@lru_cache(maxsize=256)
def _cap(z: float, epsilon: float, delta: float, rounds: int, ratio: float) -> int:
    from deai.node.dp import gaussian_epsilon

    if z <= 0:
        return 0
    cap = 0
    for c in range(1, rounds + 1):
        if gaussian_epsilon(z * ratio, c, delta) > epsilon:
            break
        cap = c
    return cap


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


@_by_spec_hash
def provider_set(spec: JobSpec) -> frozenset[str]:
    """``spec.providers`` as a set, for membership tests on large populations."""
    return frozenset(spec.providers)


def open_spec(msg: OpenJob) -> JobSpec:
    """The spec an ``OpenJob`` carries, checked against its hash and job id."""
    return _open_spec(msg.spec_json, msg.spec_hash, msg.job_id)


@lru_cache(maxsize=16)
def _open_spec(spec_json: str, spec_hash: str, job_id: str) -> JobSpec:
    """Parsed once per spec: a simulated network hands the same job to many nodes (a
    JobSpec is frozen, so sharing one is safe); a wrong spec raises every time."""
    spec = JobSpec.from_json(spec_json)
    if spec.spec_hash() != spec_hash or spec.job_id != job_id:
        raise InvalidMessage("job spec does not match its hash or job id")
    if not spec.bound:
        raise InvalidMessage("job spec has no parties or data schema")
    return spec


def param_policy(spec: JobSpec) -> UpdatePolicy:
    """Parameters (gossip, final models) are bounded far more loosely than updates."""
    return UpdatePolicy(max_norm=spec.policy.max_norm * 1e3, max_examples=spec.policy.max_examples)


def train_seed(spec: JobSpec, provider: str, round_: int) -> int:
    """A provider's batch order: public (nothing relies on it being secret), from the
    job's seed, so two specs that differ only in, say, privacy train alike."""
    return derive_seed(spec.seed, provider, round_)


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
        if self.result is None:
            self.result, self.result_hash = params, msg.model_hash
