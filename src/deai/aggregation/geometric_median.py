"""Geometric median by the smoothed Weiszfeld algorithm: RFA (Pillutla, Kakade, Harchaoui,
IEEE TSP 2022, "Robust aggregation for federated learning").

Minimises ``sum_i a_i max(nu, ||v - x_i||)`` with ``a_i`` the normalised ``weights``; each
step is ``v <- sum_i b_i x_i / sum_i b_i`` with ``b_i = a_i / max(nu, ||v - x_i||)``, which never
increases the objective. Tolerance: breakdown point 1/2 — if rows of total weight share
``h > 1/2`` are honest and lie within ``r`` of some point ``z``, the exact median lies within
``2 h r / (2 h - 1)`` of ``z`` however far the rest are. Cost ``O(n d)`` per iteration. We start
from the coordinate-wise median instead of RFA's mean (same minimiser, far fewer steps when
outliers are huge). ``nu`` keeps a step finite when ``v`` lands on a row.
"""

from __future__ import annotations

from torch import Tensor

from deai.aggregation._common import as64, normalized_weights, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def geometric_median(
    updates: Tensor,
    weights: Tensor,
    ctx: RoundContext | None = None,
    *,
    nu: float = 1e-6,
    max_iter: int = 200,
    ftol: float = 1e-10,
) -> Aggregate:
    """Approximate weighted geometric median; stops when the objective improves by less than
    ``ftol`` relative, or after ``max_iter`` steps. ``scores["distance"]``: row distances."""
    check_stack(updates, weights)
    if not (nu > 0.0 and max_iter >= 1 and ftol >= 0.0):  # NaN fails every comparison
        raise AggregationError(
            f"need nu > 0, max_iter >= 1, ftol >= 0; got {nu}, {max_iter}, {ftol}"
        )
    x = as64(updates)
    a = normalized_weights(weights)
    v = a @ x
    dist = row_distances(x, v)
    objective = float((a * dist).sum())
    for _ in range(max_iter):
        b = a / dist.clamp(min=nu)  # [n]
        v = (b @ x) / b.sum()
        dist = row_distances(x, v)
        new_objective = float((a * dist).sum())
        done = objective - new_objective <= ftol * max(new_objective, nu)
        objective = new_objective
        if done:
            break
    return Aggregate(vector=v.to(updates.dtype), scores={"distance": dist.tolist()})
