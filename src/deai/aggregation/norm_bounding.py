"""Norm bounding (Sun, Kairouz, Suresh, McMahan 2019, "Can you really backdoor federated
learning?").

Scale every row whose L2 norm exceeds ``bound`` down to ``bound``, then take the weighted
mean. With ``bound=None`` the bound is the median row norm, which a minority of attackers
cannot raise above the largest honest norm. It defeats boosted (model-replacement) and
large-norm attacks; it does not stop attacks inside the bound (sign flipping of a normal
norm, ALIE), so it is a first stage, not a whole defence. Cost ``O(n d)``. Clipped rows
still contribute, so nothing is ``excluded``; ``scores["norm"]`` holds the original norms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, normalized_weights
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def median_norm(updates: Tensor) -> float:
    """Median of the row norms (midpoint for even ``n``)."""
    norms = torch.linalg.vector_norm(as64(updates), dim=1)
    s = torch.sort(norms).values
    n = s.shape[0]
    return float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)


def clip_norms(updates: Tensor, bound: float) -> Tensor:
    """Rows scaled to norm at most ``bound`` (float64 ``[n, d]``); zero rows stay zero."""
    if not bound >= 0.0:
        raise AggregationError(f"norm bound must be >= 0, got {bound}")
    x = as64(updates)
    norms = torch.linalg.vector_norm(x, dim=1)  # [n]
    scale = torch.where(norms > bound, bound / norms.clamp(min=1e-300), torch.ones_like(norms))
    return x * scale.unsqueeze(1)


def norm_bounding(
    updates: Tensor, weights: Tensor, ctx: RoundContext | None = None, *, bound: float | None = None
) -> Aggregate:
    """Weighted mean of the norm-clipped rows (``bound=None``: the median norm)."""
    check_stack(updates, weights)
    b = median_norm(updates) if bound is None else bound
    clipped = clip_norms(updates, b)
    v = normalized_weights(weights) @ clipped
    norms = torch.linalg.vector_norm(as64(updates), dim=1)
    return Aggregate(vector=v.to(updates.dtype), scores={"norm": norms.tolist()})
