"""User-level differential privacy for federated averaging (DP-FedAvg).

McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language Models",
ICLR 2018: each participant's whole update is clipped to L2 norm ``clip``; the sum of
clipped updates has sensitivity ``clip`` (add/remove one user), so Gaussian noise of
standard deviation ``noise_multiplier * clip`` on the sum gives user-level DP, accounted as
a Poisson-subsampled Gaussian mechanism with the participation rate as the sample rate
(see :mod:`deai.privacy.accounting`). The noisy sum is divided by the *expected* number of
participants (a fixed denominator, so the division leaks nothing about who took part).

Adaptive clipping follows Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private
Learning with Adaptive Clipping", NeurIPS 2021: the clip norm tracks a target quantile of
the update norms through a private estimate of the fraction of unclipped updates,
``C <- C * exp(-eta * (b_hat - gamma))``.

Where the noise goes (:class:`NoisePlacement`) is a statement of the threat model:

* ``CENTRAL_AFTER_SECAGG``: clients clip and mask; secure aggregation reveals only the sum;
  the validator adds ``N(0, (z * clip)^2)`` to the sum. Protects against anyone who sees
  the released model; against the validator itself only if it adds the noise honestly
  (it never sees a single update, only the sum of at least ``t`` of them).
* ``DISTRIBUTED``: each of the ``m`` expected participants adds ``N(0, (z * clip)^2 / m)``
  before masking, so the sum carries the central noise without trusting the validator.
  Holds if all expected participants are honest and present; drop-outs and colluders
  shrink the noise (a fraction ``f`` of them removes a fraction ``f`` of its variance).
* ``LOCAL``: each client adds the full ``N(0, (z * clip)^2)`` to its own update (local DP):
  no trust in anyone, at ``m`` times the central noise variance on the sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from deai.errors import ConfigError, PrivacyError


class NoisePlacement(Enum):
    CENTRAL_AFTER_SECAGG = "central_after_secagg"  # validator noises the secure sum
    DISTRIBUTED = "distributed"  # each client adds 1/m of the central variance
    LOCAL = "local"  # each client adds the full noise (local DP)


@dataclass(frozen=True)
class DPFedAvgConfig:
    clip: float  # L2 clip norm of one user's update (the sensitivity of the sum)
    noise_multiplier: float  # z: noise std on the sum is z * clip
    expected_clients: float  # m = sample_rate * population, the fixed averaging denominator
    placement: NoisePlacement = NoisePlacement.CENTRAL_AFTER_SECAGG

    def __post_init__(self) -> None:
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"clip must be finite and > 0, got {self.clip}")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(
                f"noise_multiplier must be finite and >= 0, got {self.noise_multiplier}"
            )
        if not self.expected_clients > 0:
            raise ConfigError(f"expected_clients must be > 0, got {self.expected_clients}")


@dataclass(frozen=True)
class Clipped:
    vector: Tensor  # [d] the update scaled to norm <= clip
    norm: float  # L2 norm before clipping
    unclipped: bool  # norm <= clip (the bit adaptive clipping counts)


def clip_update(update: Tensor, clip: float) -> Clipped:
    """Scale ``update`` to L2 norm at most ``clip`` (no change when already inside)."""
    if update.ndim != 1:
        raise ConfigError(f"update must be a flat [d] vector, got shape {tuple(update.shape)}")
    if not bool(torch.isfinite(update).all()):
        raise PrivacyError("update contains non-finite values; cannot bound its sensitivity")
    norm = float(torch.linalg.vector_norm(update))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return Clipped(vector=update * scale, norm=norm, unclipped=norm <= clip)


def gaussian_noise(dim: int, std: float, generator: torch.Generator) -> Tensor:
    """``N(0, std^2)`` noise of shape ``[dim]`` from a seeded generator (float32).

    A pseudo-random generator is fine for simulation and tests; a deployment that needs a
    cryptographic guarantee should draw from a CSPRNG (Opacus' ``secure_mode`` reasoning).
    """
    if std < 0:
        raise ConfigError(f"noise std must be >= 0, got {std}")
    return torch.randn(dim, generator=generator, dtype=torch.float32) * std


def client_noise_std(config: DPFedAvgConfig) -> float:
    """Std of the noise a client adds to its own clipped update, by placement."""
    central = config.noise_multiplier * config.clip
    if config.placement is NoisePlacement.LOCAL:
        return central
    if config.placement is NoisePlacement.DISTRIBUTED:
        return central / math.sqrt(config.expected_clients)
    return 0.0


def server_noise_std(config: DPFedAvgConfig) -> float:
    """Std of the noise the validator adds to the (secure) sum, by placement."""
    if config.placement is NoisePlacement.CENTRAL_AFTER_SECAGG:
        return config.noise_multiplier * config.clip
    return 0.0


def privatize_client_update(
    update: Tensor, config: DPFedAvgConfig, generator: torch.Generator
) -> Clipped:
    """The client side: clip, then add this placement's client noise (none if central)."""
    c = clip_update(update, config.clip)
    std = client_noise_std(config)
    if std == 0.0:
        return c
    noisy = c.vector + gaussian_noise(c.vector.shape[0], std, generator).to(c.vector.dtype)
    return Clipped(vector=noisy, norm=c.norm, unclipped=c.unclipped)


def finalize_sum(total: Tensor, config: DPFedAvgConfig, generator: torch.Generator) -> Tensor:
    """The validator side: add this placement's server noise to the sum of client vectors
    and divide by the expected number of participants (a fixed, data-independent m)."""
    std = server_noise_std(config)
    noisy = total + gaussian_noise(total.shape[0], std, generator).to(total.dtype) if std else total
    return noisy / config.expected_clients


def dp_fedavg_aggregate(
    updates: Tensor, config: DPFedAvgConfig, generator: torch.Generator
) -> Tensor:
    """Plain-text DP-FedAvg over a stack ``[n, d]``: client side for every row, sum, then
    the validator side. With secure aggregation the sum is computed under masks instead."""
    if updates.ndim != 2:
        raise ConfigError(f"updates must be [n, d], got shape {tuple(updates.shape)}")
    total = torch.zeros(updates.shape[1], dtype=updates.dtype)
    for row in updates:
        total = total + privatize_client_update(row, config, generator).vector
    return finalize_sum(total, config, generator)


@dataclass(frozen=True)
class AdaptiveClipConfig:
    initial_clip: float = 0.1  # C_0
    target_quantile: float = 0.5  # gamma: fraction of updates meant to stay unclipped
    learning_rate: float = 0.2  # eta_C of the geometric update
    count_noise_std: float = 0.0  # sigma_b on the count of unclipped updates; paper: m / 20


class AdaptiveClip:
    """Adaptive clip norm of Andrew et al. 2021 (geometric update towards a quantile).

    Each round the participants report whether their update was unclipped; the validator
    sums ``b_i - 1/2`` (sensitivity 1/2), adds ``N(0, sigma_b^2)``, estimates the unclipped
    fraction and moves the clip norm geometrically. The update noise multiplier that keeps
    the *combined* release at total noise multiplier ``z`` is
    ``z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2`` (their Theorem 1); account the round with ``z``.
    """

    def __init__(self, config: AdaptiveClipConfig) -> None:
        if not 0 < config.target_quantile < 1:
            raise ConfigError(f"target_quantile must be in (0, 1), got {config.target_quantile}")
        if config.initial_clip <= 0 or config.learning_rate <= 0 or config.count_noise_std < 0:
            raise ConfigError(f"invalid adaptive clipping config {config}")
        self.config = config
        self.clip = config.initial_clip

    def update_noise_multiplier(self, total_noise_multiplier: float) -> float:
        """The noise multiplier to use on the updates so the round costs ``z`` in total."""
        z, sb = total_noise_multiplier, self.config.count_noise_std
        if sb == 0.0:
            return z
        inv = z**-2 - (2.0 * sb) ** -2
        if inv <= 0:
            raise ConfigError(
                f"count_noise_std={sb} too small for total noise multiplier {z}: "
                f"need 2 * count_noise_std > z"
            )
        return inv**-0.5

    def update(
        self, unclipped: list[bool], expected_clients: float, generator: torch.Generator
    ) -> float:
        """Consume the round's unclipped bits and return the next clip norm."""
        centred = sum(1.0 if b else 0.0 for b in unclipped) - 0.5 * len(unclipped)
        noise = float(gaussian_noise(1, self.config.count_noise_std, generator)[0])
        b_hat = (centred + noise) / expected_clients + 0.5
        self.clip = self.clip * math.exp(
            -self.config.learning_rate * (b_hat - self.config.target_quantile)
        )
        return self.clip
