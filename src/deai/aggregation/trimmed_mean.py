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
