"""Local training and evaluation.

The trainer interface takes a *list* of :class:`TrainRequest` and returns one result each.
A deployed node passes a list of one; the simulation runtime gathers every provider's
request of a round and passes them together, and :func:`train_local` runs them as one
``torch.func.vmap`` computation over the stacked parameters ``Tensor[n, d]``. Both go
through the same step function, so there is one training code path. Models that cannot
be vmapped (for example BatchNorm in training mode) fall back to running the same step
function per request. The built-in MLP takes the same step as batched matrix products
(:mod:`deai.learning.batched`), for a list of one as for a thousand.

Batches are drawn from a per-request seeded schedule; requests with fewer examples or
steps than the longest in the group are masked, not padded with fake data.

What the loss is depends on the model's :class:`~deai.learning.params.TaskName`:
classification (cross-entropy of ``logits [B, C]`` against labels ``y [B]``) or causal
language modelling, where an example is a window of token ids ``x [B, T + 1]`` and the loss
is the mean next-token cross-entropy of ``logits [B, T, V]`` from ``x[:, :-1]`` against
``x[:, 1:]`` (``y`` is unused). The local optimizer is SGD with heavy-ball momentum or AdamW
(Loshchilov & Hutter 2019, the inner optimizer of DiLoCo), both written over the stack
``[n, d]`` so they vectorize too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor

from deai.errors import ConfigError
from deai.learning.batched import mlp_layout, mlp_step
from deai.learning.data import Dataset
from deai.learning.params import FlatModel, TaskName

EVAL_CHUNK_TOKENS = 16_384  # causal LM evaluation: windows x length per forward pass


class Optimizer(StrEnum):
    SGD = "sgd"  # plain SGD, heavy-ball ``momentum`` if set (PyTorch convention)
    ADAMW = "adamw"  # AdamW with bias correction and decoupled weight decay


@dataclass(frozen=True)
class LocalTrainConfig:
    epochs: int = 1  # passes over the local data (used when ``steps`` is None)
    steps: int | None = None  # a fixed number of local steps instead of epochs
    batch_size: int = 32  # examples per step (fewer if the provider holds fewer)
    lr: float = 0.1  # local learning rate
    momentum: float = 0.0  # heavy-ball momentum, PyTorch convention (SGD only)
    prox_mu: float = 0.0  # FedProx proximal weight (Li et al. 2020); 0 means plain local SGD
    optimizer: Optimizer = Optimizer.SGD  # the local optimizer
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.999  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW denominator guard
    clip_norm: float | None = None  # clip each step's gradient to this L2 norm

    def __post_init__(self) -> None:
        try:  # a spec read from JSON passes the plain string
            object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        except ValueError:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}") from None
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ConfigError("adamw: need beta1, beta2 in [0, 1) and eps > 0")
        if self.weight_decay < 0 or (self.clip_norm is not None and self.clip_norm <= 0):
            raise ConfigError("weight_decay must be >= 0 and clip_norm > 0 or None")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1 or None, got {self.steps}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.prox_mu < 0:
            raise ConfigError("lr must be > 0, momentum in [0, 1), prox_mu >= 0")


@dataclass(frozen=True)
class TrainRequest:
    params: Tensor  # [d] starting parameters
    x: Tensor  # [m, *shape] the provider's local examples
    y: Tensor  # [m] labels
    config: LocalTrainConfig
    seed: int  # seeds the batch order


@dataclass(frozen=True)
class TrainResult:
    params: Tensor  # [d] parameters after local training
    steps: int  # SGD steps taken
    samples: int  # examples processed (drives simulated compute time)
    loss: float  # mean training loss over the steps taken


def batch_schedule(num_examples: int, config: LocalTrainConfig, seed: int) -> list[Tensor]:
    """Index tensors, one per step: epoch-wise reshuffles, last batch of an epoch partial."""
    gen = torch.Generator().manual_seed(seed)
    bs = min(config.batch_size, num_examples)
    if config.steps is None:
        out: list[Tensor] = []
        for _ in range(config.epochs):
            out.extend(torch.split(torch.randperm(num_examples, generator=gen), bs))
        return out
    stream = torch.cat(
        [
            torch.randperm(num_examples, generator=gen)
            for _ in range(math.ceil(config.steps * bs / num_examples))
        ]
    )
    return list(torch.split(stream[: config.steps * bs], bs))


def planned_samples(num_examples: int, config: LocalTrainConfig) -> int:
    """Examples a request will process, known before it runs (drives simulated time)."""
    bs = min(config.batch_size, num_examples)
    if config.steps is None:
        return config.epochs * num_examples
    return config.steps * bs


def per_example_loss(model: FlatModel, flat: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
    """Loss of each example ``[B]``: cross-entropy, or mean next-token cross-entropy."""
    if model.task is TaskName.CAUSAL_LM:
        ids = xb.long()  # [B, T + 1] token windows
        logits = model.forward(flat, ids[:, :-1])  # [B, T, V]
        per_token = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        return per_token.mean(dim=1)  # [B]
    logits = model.forward(flat, xb)  # [B, classes]
    return F.cross_entropy(logits, yb, reduction="none")  # [B]


def _loss(
    model: FlatModel, flat: Tensor, xb: Tensor, yb: Tensor, mb: Tensor, anchor: Tensor, mu: float
) -> Tensor:
    per_example = per_example_loss(model, flat, xb, yb)  # [B]
    loss = (per_example * mb).sum() / mb.sum().clamp_min(1.0)
    if mu > 0.0:
        loss = loss + 0.5 * mu * ((flat - anchor) ** 2).sum()
    return loss


def train_local(model: FlatModel, requests: Sequence[TrainRequest]) -> list[TrainResult]:
    """Run every request; requests sharing a config run as one vmapped computation."""
    results: dict[int, TrainResult] = {}
    groups: dict[LocalTrainConfig, list[int]] = {}
    for i, r in enumerate(requests):
        if r.params.shape != (model.dim,):
            raise ConfigError(
                f"request {i}: params shape {tuple(r.params.shape)} != ({model.dim},)"
            )
        if r.y.shape[0] == 0:
            raise ConfigError(f"request {i}: no training examples")
        groups.setdefault(r.config, []).append(i)
    for config, idx in groups.items():
        group = [requests[i] for i in idx]
        with model.lock:  # vmap traces through the module: nobody else may swap its tensors
            try:
                if not model.vmappable:
                    raise NotImplementedError(f"{type(model.module).__name__} is run one by one")
                out = _train_group(model, group, config, vectorize=True)
            except (RuntimeError, NotImplementedError):  # not vmappable: same steps, one by one
                out = [_train_group(model, [r], config, vectorize=False)[0] for r in group]
        results.update(zip(idx, out, strict=True))
    return [results[i] for i in range(len(requests))]


def _index_plan(
    reqs: Sequence[TrainRequest], config: LocalTrainConfig
) -> tuple[Tensor, Tensor, list[int], list[int]]:
    """Every request's :func:`batch_schedule` as one padded index tensor ``[n, S, B]`` and
    its mask, plus each request's steps and samples. The same draws in the same order as
    ``batch_schedule`` (one seeded generator per request), built per example count rather
    than per request and step: a flush of 1,000 small providers is 1,000 random
    permutations and a few tensor operations, not 1,000 x steps index assignments."""
    n = len(reqs)
    sizes = [int(r.y.shape[0]) for r in reqs]
    by_size: dict[int, list[int]] = {}
    for i, m in enumerate(sizes):
        by_size.setdefault(m, []).append(i)
    gen = torch.Generator()
    parts: list[tuple[list[int], Tensor, Tensor]] = []
    steps = [0] * n
    samples = [0] * n
    for m, rows in by_size.items():
        bs = min(config.batch_size, m)
        perms: list[Tensor] = []
        if config.steps is None:
            per_epoch = math.ceil(m / bs)
            if m == 1:  # every permutation of one example is [0]
                block = torch.zeros((len(rows), config.epochs, 1), dtype=torch.long)
            else:
                for i in rows:
                    gen.manual_seed(reqs[i].seed)
                    perms.extend(torch.randperm(m, generator=gen) for _ in range(config.epochs))
                block = torch.stack(perms).view(len(rows), config.epochs, m)
            pad = per_epoch * bs - m  # the last batch of an epoch is partial
            keep = torch.ones(per_epoch * bs)
            if pad:
                block = F.pad(block, (0, pad))
                keep[m:] = 0.0
            index = block.reshape(len(rows), config.epochs * per_epoch, bs)
            # the epoch's mask once per epoch (expand + reshape: repeat is ~50 us here)
            mask = keep.view(1, per_epoch, bs).expand(config.epochs, -1, -1).reshape(-1, bs)
            n_steps, n_samples = config.epochs * per_epoch, config.epochs * m
        else:
            reps = math.ceil(config.steps * bs / m)
            if m == 1:
                stream = torch.zeros((len(rows), reps), dtype=torch.long)
            else:
                for i in rows:
                    gen.manual_seed(reqs[i].seed)
                    perms.extend(torch.randperm(m, generator=gen) for _ in range(reps))
                stream = torch.stack(perms).view(len(rows), reps * m)
            index = stream[:, : config.steps * bs].reshape(len(rows), config.steps, bs)
            mask = torch.ones(config.steps, bs)
            n_steps, n_samples = config.steps, config.steps * bs
        for i in rows:
            steps[i], samples[i] = n_steps, n_samples
        parts.append((rows, index, mask))
    s_max = max(p[1].shape[1] for p in parts)
    b_max = max(p[1].shape[2] for p in parts)
    idx = torch.zeros((n, s_max, b_max), dtype=torch.long)
    keep_all = torch.zeros((n, s_max, b_max), dtype=torch.float32)
    for rows, index, mask in parts:
        at = torch.tensor(rows, dtype=torch.long)
        idx[at, : index.shape[1], : index.shape[2]] = index
        keep_all[at, : mask.shape[0], : mask.shape[1]] = mask
    return idx, keep_all, steps, samples


def _train_group(
    model: FlatModel, reqs: Sequence[TrainRequest], config: LocalTrainConfig, vectorize: bool
) -> list[TrainResult]:
    n = len(reqs)
    idx, mask, steps, samples = _index_plan(reqs, config)
    n_steps = idx.shape[1]
    x_dtype = reqs[0].x.dtype if model.task is TaskName.CAUSAL_LM else torch.float32
    # every request's examples in one tensor; request i's example j is row offset[i] + j
    # (masked positions read example 0 of their own request, as a padded copy would)
    x_all = torch.cat([r.x if r.x.dtype == x_dtype else r.x.to(x_dtype) for r in reqs])
    y_all = torch.cat([r.y if r.y.dtype == torch.long else r.y.to(torch.long) for r in reqs])
    sizes = [r.y.shape[0] for r in reqs]
    offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0)
    idx = idx + offsets[:, None, None]
    rows = [r.params if r.params.dtype == torch.float32 else r.params.float() for r in reqs]
    theta = torch.stack(rows).detach()  # [n, d]
    anchor = theta.clone() if config.prox_mu > 0 else theta[:, :1]  # unused unless FedProx
    opt = _StackedOptimizer(config, theta)
    mu = config.prox_mu

    def loss_fn(flat: Tensor, xb: Tensor, yb: Tensor, mb: Tensor, anc: Tensor) -> Tensor:
        return _loss(model, flat, xb, yb, mb, anc, mu)

    def autograd_step(
        flat: Tensor, xb: Tensor, yb: Tensor, mb: Tensor, anc: Tensor
    ) -> tuple[Tensor, Tensor]:
        # plain autograd: modules that mutate buffers in forward (BatchNorm) work here
        flat = flat.detach().requires_grad_(True)
        loss = loss_fn(flat, xb, yb, mb, anc)
        (grad,) = torch.autograd.grad(loss, flat)
        return grad, loss.detach()

    def mlp_fn(
        flat: Tensor, xb: Tensor, yb: Tensor, mb: Tensor, anc: Tensor
    ) -> tuple[Tensor, Tensor]:
        assert layout is not None
        return mlp_step(layout, flat, xb, yb, mb, anc, mu)

    # the built-in MLP: the same step as batched matrix products (deai.learning.batched)
    layout = mlp_layout(model) if vectorize else None
    step_fn = (
        mlp_fn
        if layout is not None
        else torch.func.vmap(torch.func.grad_and_value(loss_fn), randomness="different")
        if vectorize
        else autograd_step
    )
    loss_sum = torch.zeros(n)
    for s in range(n_steps):
        xb = x_all[idx[:, s]]  # [n, B, *shape]
        yb = y_all[idx[:, s]]  # [n, B]
        mb = mask[:, s]  # [n, B]
        if vectorize:
            grads, losses = step_fn(theta, xb, yb, mb, anchor)
        else:
            g, lo = step_fn(theta[0], xb[0], yb[0], mb[0], anchor[0])
            grads, losses = g[None], lo[None]
        active = (mb.sum(dim=1) > 0).to(theta.dtype)[:, None]  # [n, 1]
        theta = opt.step(theta, grads, active)
        loss_sum += losses.detach() * active[:, 0]
    # rows of the final stack (a fresh tensor: no request's parameters alias it)
    finals = theta.detach().unbind(0)
    return [
        TrainResult(params=p, steps=k, samples=m, loss=lo / k)
        for p, k, m, lo in zip(finals, steps, samples, loss_sum.tolist(), strict=True)
    ]


class _StackedOptimizer:
    """SGD (heavy-ball) or AdamW over a stack ``theta [n, d]``; rows with ``active = 0``
    (a request that has run out of steps) are left exactly as they are, state included.
    ``step`` may overwrite ``theta`` and ``grads``: the trainer owns both (a fresh stack
    and each step's fresh gradient)."""

    def __init__(self, config: LocalTrainConfig, theta: Tensor) -> None:
        self.c = config
        self.adam = config.optimizer is Optimizer.ADAMW
        self.m = torch.zeros_like(theta) if self.adam or config.momentum else None
        self.v = torch.zeros_like(theta) if self.adam else None
        self.t = torch.zeros(theta.shape[0], 1)  # [n, 1] steps taken per row

    def step(self, theta: Tensor, grads: Tensor, active: Tensor) -> Tensor:
        c = self.c
        if c.clip_norm is not None:
            norm = grads.norm(dim=1, keepdim=True)  # [n, 1]
            grads = grads * (c.clip_norm / norm.clamp_min(c.clip_norm))
        if not self.adam:
            if self.m is None:  # theta - (lr * active) * grads, in place: the same two
                # roundings without two [n, d] allocations (a large share of a small step)
                return theta.sub_(grads.mul_(c.lr * active))
            self.m = torch.where(active > 0, c.momentum * self.m + grads, self.m)
            return theta - c.lr * active * self.m
        assert self.m is not None and self.v is not None
        self.t = self.t + active
        self.m = torch.where(active > 0, c.beta1 * self.m + (1 - c.beta1) * grads, self.m)
        self.v = torch.where(active > 0, c.beta2 * self.v + (1 - c.beta2) * grads**2, self.v)
        t = self.t.clamp_min(1.0)
        m_hat = self.m / (1 - c.beta1**t)
        v_hat = self.v / (1 - c.beta2**t)
        decayed = theta * (1 - c.lr * c.weight_decay)  # decoupled, as torch.optim.AdamW
        new = decayed - c.lr * m_hat / (v_hat.sqrt() + c.eps)
        return torch.where(active > 0, new, theta)


def _logits_and_targets(
    model: FlatModel, flat: Tensor, x: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """Flattened ``(logits [N, C], targets [N])`` of a whole dataset for one vector."""
    if model.task is not TaskName.CAUSAL_LM:
        return model.forward(flat, x), y
    ids = x.long()  # [N, T + 1]
    chunk = max(1, EVAL_CHUNK_TOKENS // ids.shape[1])
    logits = [model.forward(flat, ids[i : i + chunk, :-1]) for i in range(0, len(ids), chunk)]
    v = logits[0].shape[-1]
    return torch.cat(logits).reshape(-1, v), ids[:, 1:].reshape(-1)  # [N*T, V], [N*T]


@torch.no_grad()
def evaluate(model: FlatModel, flat: Tensor, data: Dataset) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of one parameter vector on ``data``; for a
    causal LM, per next token (``exp(loss)`` is the perplexity)."""
    if model.task is TaskName.CAUSAL_LM:
        logits, targets = _logits_and_targets(model, flat, data.x, data.y)
        loss = F.cross_entropy(logits, targets).item()
        acc = (logits.argmax(dim=1) == targets).float().mean().item()
        return float(loss), float(acc)
    logits = model.forward(flat, data.x)
    loss = F.cross_entropy(logits, data.y).item()
    acc = (logits.argmax(dim=1) == data.y).float().mean().item()
    return float(loss), float(acc)


@torch.no_grad()
def evaluate_many(model: FlatModel, stack: Tensor, data: Dataset) -> tuple[Tensor, Tensor]:
    """Losses ``[n]`` and accuracies ``[n]`` of a stack ``[n, d]`` of parameter vectors."""

    def one(flat: Tensor) -> tuple[Tensor, Tensor]:
        logits, y = _logits_and_targets(model, flat, data.x, data.y)
        return F.cross_entropy(logits, y), (logits.argmax(dim=1) == y).float().mean()

    try:
        if not model.vmappable:
            raise NotImplementedError(f"{type(model.module).__name__} is run one by one")
        losses, accs = torch.func.vmap(one)(stack)
    except (RuntimeError, NotImplementedError):
        pairs = [one(row) for row in stack]
        losses = torch.stack([p[0] for p in pairs])
        accs = torch.stack([p[1] for p in pairs])
    return losses, accs
