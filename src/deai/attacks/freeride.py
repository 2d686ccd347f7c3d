"""Free-riders: participants that want the reward (or the model) without training.

Lin, Du, Liu, "Free-riders in federated learning: attacks and defenses" (arXiv:1911.12560,
2019) and Fraboni, Vidal, Lorenzi, "Free-rider attacks on model aggregation in federated
learning" (AISTATS 2021). The free-rider knows the global models it received, nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.errors import ConfigError


def zero(dim: int, k: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    """Send an all-zero update (the laziest free-rider)."""
    if k < 1:
        raise ConfigError(f"need at least one row, got {k}")
    return torch.zeros(k, dim, dtype=dtype)


def stale(prev_global_delta: Tensor, k: int = 1) -> Tensor:
    """Replay the last global model change as one's own update (Fraboni et al. 2021: it is
    close to what honest clients send while training still moves in one direction)."""
    if k < 1:
        raise ConfigError(f"need at least one row, got {k}")
    return prev_global_delta.unsqueeze(0).repeat(k, 1)


def noise(base: Tensor, sigma: float, gen: torch.Generator, k: int = 1) -> Tensor:
    """Disguised free-rider (Fraboni et al. 2021): ``base`` (zero or the stale global delta)
    plus small Gaussian noise ``N(0, sigma^2 I)`` so the update does not look empty."""
    if k < 1 or sigma < 0.0:
        raise ConfigError(f"need k >= 1 and sigma >= 0; got {k}, {sigma}")
    return base.unsqueeze(0) + sigma * torch.randn(
        k, base.shape[0], generator=gen, dtype=base.dtype
    )
