"""Sample-level DP-SGD for a provider's local training, through Opacus.

Abadi et al., "Deep Learning with Differential Privacy", CCS 2016: per-example gradients
are clipped to ``max_grad_norm``, Gaussian noise of std ``noise_multiplier * max_grad_norm``
is added to their sum, and batches are Poisson-sampled with rate ``batch_size / n`` so the
privacy amplification by sampling that the accountants assume really holds. Opacus'
``PrivacyEngine`` does all three; this module only wires it to a flat-vector world and
returns what the caller needs for accounting (steps and sample rate) and the trained
parameters in ``parameters_to_vector`` order.

Every Poisson draw is one accounted step *and* one noised step: an empty batch still adds
``N(0, (z C)^2)`` to a zero clipped sum (skipping it, as an earlier version did, leaves less
noise than the accountant assumes), and the step count is checked against the steps
Opacus' own accountant hook recorded.

Determinism: the Poisson sampler and the noise each get a ``torch.Generator`` seeded from
``seed``, and the model is deep-copied first, so the same (model, data, config, seed)
gives the same parameters on the same machine and thread count. Opacus' ``secure_mode``
(a CSPRNG, needed for a cryptographic guarantee against floating-point attacks) is not
reproducible and needs ``torchcsprng``; it is off here, which is fine for simulation.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from deai.errors import ConfigError, PrivacyError


@dataclass(frozen=True)
class DPSGDConfig:
    noise_multiplier: float  # sigma / max_grad_norm
    max_grad_norm: float  # per-example clip norm
    batch_size: int = 32  # expected batch size; sample rate = batch_size / n
    epochs: int = 1  # passes (in expectation) over the local data
    lr: float = 0.1  # plain SGD learning rate
    momentum: float = 0.0


@dataclass(frozen=True)
class DPSGDResult:
    parameters: Tensor  # [d] trained parameters, parameters_to_vector order
    steps: int  # optimizer steps taken (one Poisson-sampled batch each)
    sample_rate: float  # batch_size / n, the rate to account with
    noise_multiplier: float
    empty_batches: int = 0  # Poisson batches with no example (noised all the same)


def train_dp_sgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: DPSGDConfig,
    seed: int,
    loss_fn: nn.Module | None = None,
) -> DPSGDResult:
    """Train a copy of ``model`` with DP-SGD on ``(x, y)``; ``model`` is left unchanged.

    Account the result with ``PrivacyAccountant.step(noise_multiplier, sample_rate, steps)``.
    """
    n = int(x.shape[0])
    if n == 0 or y.shape[0] != n:
        raise ConfigError(
            f"need matching non-empty x and y, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if config.batch_size < 1 or config.batch_size > n or config.epochs < 1:
        raise ConfigError(f"invalid DP-SGD schedule for {n} examples: {config}")
    if config.max_grad_norm <= 0 or config.noise_multiplier < 0:
        raise ConfigError(f"invalid DP-SGD noise/clip: {config}")
    work = copy.deepcopy(model)
    work.train()
    sample_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1_000_003)
    loader = DataLoader(TensorDataset(x, y), batch_size=config.batch_size, generator=sample_gen)
    optimizer = torch.optim.SGD(work.parameters(), lr=config.lr, momentum=config.momentum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns that secure_mode is off
        engine = PrivacyEngine(accountant="rdp")
        private, opt, dl = engine.make_private(
            module=work,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=config.noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_gen,
        )
    criterion = loss_fn or nn.CrossEntropyLoss()
    steps = empty = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backward-hook notices from Opacus' grad samplers
        for _ in range(config.epochs):
            for xb, yb in dl:
                steps += 1
                opt.zero_grad()
                if len(xb) == 0:
                    # The accountant charges every Poisson draw, so the mechanism must noise
                    # every draw: an empty batch is a step with a zero clipped sum plus
                    # N(0, (z C)^2), like any other. Opacus' optimizer handles a batch of
                    # zero per-sample gradients; it needs them to exist (empty), so set them.
                    empty += 1
                    for p in work.parameters():
                        if p.requires_grad:
                            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)  # type: ignore[attr-defined]
                else:
                    criterion(private(xb), yb).backward()
                opt.step()
    noised = sum(int(h[2]) for h in engine.accountant.history)  # Opacus' step hook count
    if noised != steps:
        raise PrivacyError(f"DP-SGD noised {noised} steps but accounts {steps}")
    private.remove_hooks()
    params = torch.nn.utils.parameters_to_vector(p.detach() for p in work.parameters())
    sample_rate = 1.0 / len(dl)
    assert math.isclose(sample_rate, config.batch_size / n, rel_tol=0.5), "Opacus sample rate"
    return DPSGDResult(params.clone(), steps, sample_rate, config.noise_multiplier, empty)
