"""Outsourced work: task specs addressed by hash, and the workers that run them.

Two kinds of task:

* :class:`InferenceTask`: run a model (architecture + flat parameter vector) on given
  inputs; the result is the logits ``[n, classes]``.
* :class:`TrainingTask`: run ``steps`` SGD steps from a given checkpoint on
  requester-provided data, in an order derived from the task's seed, saving a checkpoint
  every ``checkpoint_every`` steps (the Proof-of-Learning transcript, :mod:`.pol`).

A task's id is the keccak of its canonical content plus a nonce, so a worker that receives
the spec can check it and nobody can swap the inputs under a given id.

A :class:`Worker` executes tasks with a :class:`Behaviour`: honest, or one of the cheating
strategies the verification plane must catch (random output, stale output, a smaller or a
quantized model, skipped SGD steps, partial training, copying another worker, colluding).
Copying happens at commit time and is driven by :mod:`.protocol`; here a copier with
nothing to copy falls back to random output. Honest workers differ only in their
:class:`ExecutionEnv` (thread count and micro-batch split), the variation the tolerant
fingerprint must absorb.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import torch
from eth_hash.auto import keccak
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.errors import ConfigError
from deai.verification.determinism import deterministic, tensor_hash


class Behaviour(Enum):
    HONEST = "honest"
    RANDOM_OUTPUT = "random_output"  # logits or checkpoints drawn at random
    STALE_OUTPUT = "stale_output"  # the previous task's result, replayed
    SMALLER_MODEL = "smaller_model"  # half of the hidden units dropped
    QUANTIZED_MODEL = "quantized_model"  # weights rounded to int8 (per-tensor, symmetric)
    SKIPPED_STEPS = "skipped_steps"  # every other SGD step skipped, checkpoints as if not
    PARTIAL_TRAINING = "partial_training"  # first half trained, the rest extrapolated
    FABRICATE_ONE_SEGMENT = "fabricate_one_segment"  # one middle segment extrapolated
    STOP_EARLY_HONEST_TAIL = "stop_early_honest_tail"  # half trained, then extrapolated,
    # and the last segment trained honestly from the extrapolated checkpoint
    COPY = "copy"  # copies another worker's commitment and reveal
    COLLUDE = "collude"  # the same cheap fake result as its colluding partners


@dataclass(frozen=True)
class ModelSpec:
    in_dim: int = 64  # sklearn digits: 8x8 images
    hidden: int = 64  # width of the single hidden layer
    out_dim: int = 10  # classes

    def to_bytes(self) -> bytes:
        return struct.pack("<III", self.in_dim, self.hidden, self.out_dim)

    def build(self, params: Tensor | None = None, seed: int = 0) -> nn.Sequential:
        """The MLP ``in -> hidden -> ReLU -> out``; ``params`` in parameters_to_vector order,
        or a seeded initialization."""
        with deterministic(seed):
            model = nn.Sequential(
                nn.Linear(self.in_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.out_dim)
            )
        if params is not None:
            if params.numel() != self.num_params:
                raise ConfigError(f"tasks: got {params.numel()} params, need {self.num_params}")
            # a copy: vector_to_parameters makes views, and the caller's vector must stay intact
            vector_to_parameters(params.detach().to(torch.float32).clone(), model.parameters())
        return model

    @property
    def num_params(self) -> int:
        return self.hidden * (self.in_dim + 1) + self.out_dim * (self.hidden + 1)

    def init_params(self, seed: int) -> Tensor:
        return parameters_to_vector(self.build(seed=seed).parameters()).detach()

    def macs(self, rows: int) -> int:
        """Multiply-accumulates of one forward pass over ``rows`` inputs (the cost unit)."""
        return rows * (self.in_dim * self.hidden + self.hidden * self.out_dim)


def _task_id(kind: bytes, *parts: bytes) -> bytes:
    return bytes(keccak(kind + b"".join(parts)))


@dataclass(frozen=True, eq=False)
class InferenceTask:
    model: ModelSpec
    params: Tensor  # float32 [num_params]
    inputs: Tensor  # float32 [n, in_dim]
    nonce: int = 0  # distinguishes repeated requests (and blinds escalations)

    @cached_property
    def task_id(self) -> bytes:
        return _task_id(
            b"deai.inference.v1",
            self.model.to_bytes(),
            tensor_hash(self.params),
            tensor_hash(self.inputs),
            self.nonce.to_bytes(32, "big"),
        )

    def with_nonce(self, nonce: int) -> InferenceTask:
        return InferenceTask(self.model, self.params, self.inputs, nonce)


@dataclass(frozen=True, eq=False)
class TrainingTask:
    model: ModelSpec
    params: Tensor  # float32 [num_params], the starting checkpoint
    data_x: Tensor  # float32 [m, in_dim], requester-provided
    data_y: Tensor  # int64 [m]
    steps: int = 20  # SGD steps to run
    batch_size: int = 16  # examples per step
    lr: float = 0.05  # SGD learning rate
    seed: int = 0  # fixes the data order
    checkpoint_every: int = 5  # PoL checkpoint interval k (steps)
    nonce: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.checkpoint_every < 1 or self.steps % self.checkpoint_every:
            raise ConfigError("tasks: steps must be a positive multiple of checkpoint_every")

    @property
    def segments(self) -> int:
        return self.steps // self.checkpoint_every

    @cached_property
    def task_id(self) -> bytes:
        hp = struct.pack(
            "<IIdqIQ",
            self.steps,
            self.batch_size,
            self.lr,
            self.seed,
            self.checkpoint_every,
            self.nonce,
        )
        return _task_id(
            b"deai.training.v1",
            self.model.to_bytes(),
            tensor_hash(self.params),
            tensor_hash(self.data_x),
            tensor_hash(self.data_y),
            hp,
        )

    @cached_property
    def data_order(self) -> Tensor:
        """int64 ``[steps, batch_size]``: epochs of seeded permutations, cut into batches."""
        gen = torch.Generator().manual_seed(self.seed)
        m = self.data_x.shape[0]
        need = self.steps * self.batch_size
        perms = [torch.randperm(m, generator=gen) for _ in range(-(-need // m))]
        return torch.cat(perms)[:need].reshape(self.steps, self.batch_size)


@dataclass(frozen=True)
class ExecutionEnv:
    threads: int = 1  # intra-op threads
    microbatch: int | None = None  # rows per forward/backward chunk; None = all at once


def forward(model: nn.Module, inputs: Tensor, env: ExecutionEnv) -> Tensor:
    """Logits of ``inputs``, computed in micro-batches of ``env.microbatch`` rows."""
    step = env.microbatch or inputs.shape[0]
    with torch.no_grad():
        return torch.cat([model(inputs[i : i + step]) for i in range(0, inputs.shape[0], step)])


def train_steps(
    task: TrainingTask, start: Tensor, first: int, count: int, env: ExecutionEnv, stride: int = 1
) -> Tensor:
    """Run SGD steps ``first, first + stride, ...`` (``count`` steps in the range
    ``[first, first + count)``) from ``start``; return the new flat parameters. The gradient of
    a batch is the mean over its micro-batches' summed losses, so splitting changes only the
    summation order."""
    model = task.model.build(start)
    params = list(model.parameters())
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with deterministic(task.seed, env.threads):
        for t in range(first, first + count, stride):
            idx = task.data_order[t]
            chunk = env.microbatch or idx.numel()
            grads = [torch.zeros_like(p) for p in params]
            for i in range(0, idx.numel(), chunk):
                part = idx[i : i + chunk]
                loss = loss_fn(model(task.data_x[part]), task.data_y[part])
                for g, d in zip(grads, torch.autograd.grad(loss, params), strict=True):
                    g += d
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(g, alpha=task.lr / idx.numel())
    return parameters_to_vector(params).detach()


def fabricated_segments(behaviour: Behaviour, segments: int) -> frozenset[int]:
    """Segments whose end checkpoint a training strategy fabricates (not trained)."""
    half = max(segments // 2, 1)
    if behaviour is Behaviour.PARTIAL_TRAINING:
        return frozenset(range(half, segments))
    if behaviour is Behaviour.STOP_EARLY_HONEST_TAIL:
        return frozenset(range(half, segments - 1))
    if behaviour is Behaviour.FABRICATE_ONE_SEGMENT and segments > 2:
        return frozenset({segments // 2})
    return frozenset()


def quantize_int8(params: Tensor) -> Tensor:
    """Symmetric per-tensor int8 fake quantization of a flat vector."""
    scale = params.abs().max().clamp(min=1e-12) / 127
    return torch.round(params / scale).clamp(-127, 127) * scale


def _seeded_normal(key: bytes, shape: tuple[int, ...]) -> Tensor:
    gen = torch.Generator().manual_seed(int.from_bytes(key[:8], "big") & (2**63 - 1))
    return torch.randn(shape, generator=gen)


@dataclass
class Worker:
    """A compute provider. ``behaviour`` selects honest execution or a cheating strategy."""

    address: str  # 0x-prefixed 20-byte hex address
    behaviour: Behaviour = Behaviour.HONEST
    env: ExecutionEnv = ExecutionEnv()
    secret: bytes = b""  # seeds salts and random fakes; colluders share ``collusion_key``
    collusion_key: bytes = b""
    _last_output: Tensor | None = field(default=None, repr=False)
    _last_checkpoints: list[Tensor] | None = field(default=None, repr=False)

    def salt(self, task_id: bytes) -> bytes:
        return bytes(keccak(b"salt" + self.secret + bytes.fromhex(self.address[2:]) + task_id))

    def _fake_key(self, task_id: bytes) -> bytes:
        if self.behaviour is Behaviour.COLLUDE:
            return bytes(keccak(b"fake" + self.collusion_key + task_id))
        return bytes(keccak(b"fake" + self.secret + bytes.fromhex(self.address[2:]) + task_id))

    def infer(self, task: InferenceTask) -> Tensor:
        """The logits this worker returns for ``task``."""
        b = self.behaviour
        shape = (task.inputs.shape[0], task.model.out_dim)
        if b in (Behaviour.RANDOM_OUTPUT, Behaviour.COLLUDE, Behaviour.COPY):
            return _seeded_normal(self._fake_key(task.task_id), shape) * 5
        last = self._last_output
        if b is Behaviour.STALE_OUTPUT and last is not None and last.shape == shape:
            return last
        params = task.params
        spec = task.model
        if b is Behaviour.QUANTIZED_MODEL:
            params = quantize_int8(params)
        model = spec.build(params)
        if b is Behaviour.SMALLER_MODEL:
            with torch.no_grad():  # drop the second half of the hidden units
                first = model[0]
                assert isinstance(first, nn.Linear)
                first.weight[spec.hidden // 2 :] = 0
                first.bias[spec.hidden // 2 :] = 0
        with deterministic(0, self.env.threads):
            out = forward(model, task.inputs, self.env)
        self._last_output = out
        return out

    def train(self, task: TrainingTask) -> list[Tensor]:
        """Checkpoints ``[θ_0, θ_k, θ_2k, ..., θ_steps]`` this worker claims for ``task``."""
        b = self.behaviour
        k = task.checkpoint_every
        cached = self._last_checkpoints
        if b is Behaviour.STALE_OUTPUT and cached is not None and len(cached) == task.segments + 1:
            return cached
        ckpts = [task.params.clone()]
        if b in (Behaviour.RANDOM_OUTPUT, Behaviour.COLLUDE, Behaviour.COPY):
            noise = _seeded_normal(
                self._fake_key(task.task_id), (task.segments, task.params.numel())
            )
            return ckpts + [task.params + 0.01 * n for n in noise]
        for s in range(task.segments):
            if s in fabricated_segments(b, task.segments):
                ckpts.append(ckpts[-1] + (ckpts[-1] - ckpts[-2]))  # linear extrapolation
                continue
            stride = 2 if b is Behaviour.SKIPPED_STEPS else 1
            ckpts.append(train_steps(task, ckpts[-1], s * k, k, self.env, stride))
        self._last_checkpoints = ckpts
        return ckpts
