"""Small numerical helpers shared by the rules (not part of the public API).

Every rule computes in float64 and casts its result back to the input dtype, so the
order-dependent sums that validators must agree on are as stable as CPU float allows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.errors import AggregationError


def as64(x: Tensor) -> Tensor:
    """A float64 copy-or-view of ``x`` (no copy when it already is float64)."""
    return x.to(torch.float64)


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """Exact squared Euclidean distances ``[n, n]`` in float64.

    Row by row (memory ``O(n d)``, not ``O(n^2 d)``) and without the ``|a|^2 + |b|^2 - 2ab``
    shortcut, which loses precision and can go negative. The result is exactly symmetric.
    """
    x64 = as64(x)
    n = x64.shape[0]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        out[i] = ((x64 - x64[i]) ** 2).sum(dim=1)  # [n]
    return out


def row_distances(x: Tensor, v: Tensor) -> Tensor:
    """``||x_i - v||`` for every row, float64 ``[n]``."""
    return torch.linalg.vector_norm(as64(x) - as64(v), dim=1)


def normalized_weights(weights: Tensor) -> Tensor:
    """``weights / weights.sum()`` in float64; a zero total is an error, not a NaN."""
    w = as64(weights)
    total = float(w.sum())
    if total <= 0.0:
        raise AggregationError("weights sum to zero")
    return w / total


def check_vector(v: Tensor, dim: int, what: str) -> None:
    """A reference or centre vector must be a finite float ``[d]``."""
    if v.shape != (dim,):
        raise AggregationError(f"{what} must have shape ({dim},), got {tuple(v.shape)}")
    if not torch.is_floating_point(v) or not bool(torch.isfinite(v).all()):
        raise AggregationError(f"{what} must be finite floating point")
