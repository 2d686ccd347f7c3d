"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett, ICML 2018).

Per coordinate, drop the ``trim`` largest and the ``trim`` smallest values and average the
rest. Tolerance: ``b <= trim`` arbitrary rows; each coordinate of the result then lies inside
the honest range of that coordinate (the survivors are all bracketed by honest values).
Requires ``2 * trim < n``. Cost ``O(n log n · d)``. Ignores ``weights``. Same weak spot as the
median against small coordinated shifts (ALIE).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def trim_count(n: int, fraction: float) -> int:
    """Rows trimmed per side for a ``fraction`` in ``[0, 0.5)``: ``floor(fraction n)``."""
    if not 0.0 <= fraction < 0.5:
        raise AggregationError(f"trim fraction must be in [0, 0.5), got {fraction}")
    return int(fraction * n)


def trimmed_mean(
    updates: Tensor, weights: Tensor, ctx: RoundContext | None = None, *, trim: int
) -> Aggregate:
    """Average of each coordinate after trimming ``trim`` values from each side."""
    check_stack(updates, weights)
    n = updates.shape[0]
    if trim < 0 or 2 * trim >= n:
        raise AggregationError(f"trimmed mean needs 0 <= trim and 2 * trim < n; got {trim=}, {n=}")
    s = torch.sort(as64(updates), dim=0).values  # [n, d]
    v = s[trim : n - trim].mean(dim=0)  # [d]
    return Aggregate(
        vector=v.to(updates.dtype),
        scores={"distance": row_distances(updates, v).tolist()},
    )


def weighted_trimmed_mean(x: Tensor, weights: Tensor, fraction: float) -> Tensor:
    """Per coordinate, drop ``fraction`` of the total weight from each end of the sorted values
    (splitting a row's weight at the cut) and average what is left, float64 ``[d]``.

    With equal weights and integer ``fraction n`` this is :func:`trimmed_mean` with
    ``trim = fraction n``. Each coordinate stays inside the range of the rows holding the
    middle ``1 - 2 fraction`` of the weight, so Byzantine weight below ``fraction`` cannot
    leave the honest range.
    """
    if not 0.0 <= fraction < 0.5:
        raise AggregationError(f"trim fraction must be in [0, 0.5), got {fraction}")
    w = as64(weights)
    total = float(w.sum())
    if total <= 0.0:
        raise AggregationError("weights sum to zero")
    values, order = torch.sort(as64(x), dim=0, stable=True)  # [n, d] each
    ws = w[order]  # [n, d] weight of each sorted value
    upper = torch.cumsum(ws, dim=0)  # [n, d] cumulative weight up to and including the row
    lower = upper - ws
    lo, hi = fraction * total, (1.0 - fraction) * total
    kept = (torch.minimum(upper, torch.full_like(upper, hi)) - lower.clamp(min=lo)).clamp(min=0.0)
    return (kept * values).sum(dim=0) / kept.sum(dim=0)


def weighted_band(x: Tensor, weights: Tensor, fraction: float) -> tuple[Tensor, Tensor]:
    """Per coordinate, the range ``[lo, hi]`` of the values left after dropping ``fraction``
    of the weight from each end (float64 ``[d]`` each): the band a trimmed mean averages.
    Byzantine weight below ``fraction`` cannot move either end outside the honest range."""
    if not 0.0 <= fraction < 0.5:
        raise AggregationError(f"trim fraction must be in [0, 0.5), got {fraction}")
    w = as64(weights)
    total = float(w.sum())
    if total <= 0.0:
        raise AggregationError("weights sum to zero")
    values, order = torch.sort(as64(x), dim=0, stable=True)  # [n, d]
    upper = torch.cumsum(w[order], dim=0)  # [n, d]
    lower = upper - w[order]
    inside = (upper > fraction * total) & (lower < (1.0 - fraction) * total) & (w[order] > 0)
    big = torch.finfo(torch.float64).max
    lo = torch.where(inside, values, big).min(dim=0).values
    hi = torch.where(inside, values, -big).max(dim=0).values
    return lo, hi
