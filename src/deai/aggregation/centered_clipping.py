"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021, "Learning from history for
Byzantine robust optimization").

Starting from a centre ``v``, repeat ``iterations`` times
``v <- v + sum_i w_i clip_tau(x_i - v) / sum_i w_i`` where ``clip_tau`` scales a vector to
norm at most ``tau``. Each row moves the result by at most ``w_i tau / sum w`` per
iteration, so an attacker's pull is bounded whatever it sends. The paper starts from the
previous round's (momentum) aggregate; a pure function has no history, so the default
centre is the coordinate-wise median (pass ``center`` to use the previous aggregate).
``tau=None`` picks the median distance of the rows to the start centre, which is scale-free.
Tolerance: any Byzantine weight share ``delta < 1/2`` has bounded pull; the paper's
convergence guarantee (bias ``O(sqrt(delta))`` times the honest spread) assumes ``delta``
around 0.1 to 0.2. Cost ``O(L n d)``. Nothing is excluded;
``scores["clip_scale"]`` is each row's last clipping factor in ``(0, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, check_vector, normalized_weights, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.aggregation.median import coordinate_median
from deai.errors import AggregationError


def median_distance(x: Tensor, v: Tensor) -> float:
    """Median (midpoint for even ``n``) of the row distances to ``v``."""
    s = torch.sort(row_distances(x, v)).values
    n = s.shape[0]
    return float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)


def clip_iterate(
    x: Tensor, w: Tensor, v: Tensor, tau: float, iterations: int
) -> tuple[Tensor, Tensor]:
    """The clipping iteration on float64 ``x[n, d]`` with normalised ``w[n]`` from ``v[d]``.

    Returns the final centre and each row's last clipping factor.
    """
    scale = torch.ones(x.shape[0], dtype=torch.float64)
    for _ in range(iterations):
        diff = x - v  # [n, d]
        norms = torch.linalg.vector_norm(diff, dim=1)  # [n]
        if tau > 0.0:
            scale = torch.where(norms > tau, tau / norms.clamp(min=1e-300), torch.ones_like(norms))
        else:
            scale = torch.zeros_like(norms)
        v = v + (w * scale) @ diff
    return v, scale


def centered_clipping(
    updates: Tensor,
    weights: Tensor,
    ctx: RoundContext | None = None,
    *,
    tau: float | None = None,
    iterations: int = 3,
    center: Tensor | None = None,
) -> Aggregate:
    """Centered clipping from ``center`` (default: coordinate-wise median)."""
    check_stack(updates, weights)
    if iterations < 1:
        raise AggregationError(f"centered clipping needs iterations >= 1, got {iterations}")
    if tau is not None and not tau > 0.0:
        raise AggregationError(f"centered clipping needs tau > 0, got {tau}")
    x = as64(updates)
    if center is None:
        v0 = coordinate_median(x)
    else:
        check_vector(center, x.shape[1], "center")
        v0 = as64(center)
    t = median_distance(x, v0) if tau is None else tau
    v, scale = clip_iterate(x, normalized_weights(weights), v0, t, iterations)
    return Aggregate(vector=v.to(updates.dtype), scores={"clip_scale": scale.tolist()})
