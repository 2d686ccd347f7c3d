"""Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018, "Byzantine-robust
distributed learning: towards optimal statistical rates").

Each coordinate of the result is the median of that coordinate over the rows (the mean of
the two middle values when ``n`` is even). Tolerance: any ``b < n / 2`` arbitrary rows; each
coordinate then stays inside the honest range of that coordinate. Cost ``O(n log n · d)``.
It ignores ``weights`` (a claimed example count must not buy a larger say). Weak spot: the
attacker may move every coordinate a little at once (ALIE, IPM), and on non-IID data the
median is a biased estimate of the mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def coordinate_median(x: Tensor) -> Tensor:
    """Coordinate-wise median of ``x[n, d]`` as float64 ``[d]`` (midpoint for even ``n``)."""
    s = torch.sort(as64(x), dim=0).values  # [n, d]
    n = s.shape[0]
    if n % 2 == 1:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


def weighted_coordinate_median(x: Tensor, weights: Tensor) -> Tensor:
    """Per coordinate, the smallest value whose cumulative weight reaches half the total.

    Rows with zero weight have no say. Float64 ``[d]``. Raises if the weights sum to zero.
    """
    w = as64(weights)
    total = float(w.sum())
    if total <= 0.0:
        raise AggregationError("weights sum to zero")
    values, order = torch.sort(as64(x), dim=0, stable=True)  # [n, d] each
    cum = torch.cumsum(w[order], dim=0)  # [n, d] weight of the rows sorted per coordinate
    first = torch.argmax((cum >= total / 2).to(torch.int8), dim=0)  # [d] first row past half
    return values.gather(0, first.unsqueeze(0)).squeeze(0)


def median(updates: Tensor, weights: Tensor, ctx: RoundContext | None = None) -> Aggregate:
    """The coordinate-wise median rule. ``scores["distance"]`` is each row's L2 distance to
    the result; nothing is ``excluded`` (exclusion per row is not meaningful here)."""
    check_stack(updates, weights)
    v = coordinate_median(updates)
    return Aggregate(
        vector=v.to(updates.dtype),
        scores={"distance": row_distances(updates, v).tolist()},
    )
