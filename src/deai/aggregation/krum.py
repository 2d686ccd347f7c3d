"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017, "Machine
learning with adversaries: Byzantine tolerant gradient descent").

Each row's score is the sum of squared distances to its ``n - f - 2`` nearest other rows;
Krum returns the row with the lowest score, Multi-Krum the weighted mean of the ``m`` rows
with the lowest scores. Tolerance: ``f`` Byzantine rows with ``n > 2 f + 2`` (checked: a
larger ``f`` is an error, never a silent fallback). Cost ``O(n^2 d)``. Ties are broken by row
index, so validators agree. Weak spots: ALIE and other in-distribution attacks, which make
the attacker's row the most "central" one; on non-IID data Krum discards useful outliers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, normalized_weights, pairwise_sq_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def check_krum_f(n: int, f: int) -> None:
    """Krum's precondition ``0 <= f`` and ``n > 2 f + 2``."""
    if f < 0 or n <= 2 * f + 2:
        raise AggregationError(f"Krum needs n > 2f + 2 (and f >= 0); got n={n}, f={f}")


def krum_scores(updates: Tensor, f: int) -> Tensor:
    """Float64 ``[n]`` Krum scores; requires ``n > 2 f + 2``."""
    n = updates.shape[0]
    check_krum_f(n, f)
    d2 = pairwise_sq_distances(updates)  # [n, n]
    d2.fill_diagonal_(float("inf"))
    nearest = torch.sort(d2, dim=1, stable=True).values[:, : n - f - 2]  # [n, n - f - 2]
    return nearest.sum(dim=1)


def _lowest(scores: Tensor, m: int) -> list[int]:
    """Indices of the ``m`` lowest scores, ties broken by the lower index."""
    return sorted(torch.argsort(scores, stable=True)[:m].tolist())


def krum(updates: Tensor, weights: Tensor, ctx: RoundContext | None = None, *, f: int) -> Aggregate:
    """Krum: the single row with the lowest score; every other row is ``excluded``."""
    check_stack(updates, weights)
    scores = krum_scores(updates, f)
    (best,) = _lowest(scores, 1)
    excluded = tuple(i for i in range(updates.shape[0]) if i != best)
    return Aggregate(updates[best].clone(), excluded, {"krum": scores.tolist()})


def multi_krum(
    updates: Tensor,
    weights: Tensor,
    ctx: RoundContext | None = None,
    *,
    f: int,
    m: int | None = None,
) -> Aggregate:
    """Multi-Krum: weighted mean of the ``m`` lowest-score rows (``m = n - f`` if ``None``).

    ``1 <= m <= n - f``; more than ``n - f`` rows would have to include an attacker.
    """
    check_stack(updates, weights)
    n = updates.shape[0]
    scores = krum_scores(updates, f)
    m = n - f if m is None else m
    if not 1 <= m <= n - f:
        raise AggregationError(f"Multi-Krum needs 1 <= m <= n - f; got m={m}, n={n}, f={f}")
    chosen = _lowest(scores, m)
    w = normalized_weights(weights[chosen])
    vector = w @ as64(updates[chosen])
    excluded = tuple(i for i in range(n) if i not in set(chosen))
    return Aggregate(vector.to(updates.dtype), excluded, {"krum": scores.tolist()})
