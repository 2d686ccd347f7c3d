"""Sybil clones (Douceur, IPTPS 2002; in federated learning Fung, Yoon, Beschastnikh, RAID
2020): one attacker registers ``k`` identities and sends its (possibly poisoned) update from
each, optionally with small independent jitter so the copies are not byte-identical. Knows
only its own update."""

from __future__ import annotations

import torch
from torch import Tensor

from deai.errors import ConfigError


def clones(update: Tensor, k: int, jitter: float, gen: torch.Generator) -> Tensor:
    """``k`` rows ``update + jitter * N(0, I)`` (exact copies when ``jitter == 0``)."""
    if k < 1 or jitter < 0.0:
        raise ConfigError(f"Sybil clones need k >= 1 and jitter >= 0; got {k}, {jitter}")
    rows = update.unsqueeze(0).repeat(k, 1)
    if jitter > 0.0:
        rows = rows + jitter * torch.randn(rows.shape, generator=gen, dtype=update.dtype)
    return rows
