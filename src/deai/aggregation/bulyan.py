"""Bulyan (El Mhamdi, Guerraoui, Rouault, ICML 2018, "The hidden vulnerability of
distributed learning in Byzantium").

Select ``theta = n - 2 f`` rows by repeatedly taking the Krum winner of the rows not yet
selected, then, per coordinate, average the ``beta = theta - 2 f`` selected values closest to
the selected rows' coordinate median. Tolerance: ``f`` Byzantine rows with ``n >= 4 f + 3``
(checked). Cost ``O(n^2 d)`` for the distances plus ``O(theta^2)`` selection bookkeeping.
Ignores ``weights``. It bounds each coordinate's deviation, closing Krum's hole where an
attacker hides a large change in a few coordinates; still weak against ALIE.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, pairwise_sq_distances, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.aggregation.median import coordinate_median
from deai.errors import AggregationError


def _iterated_krum(d2: Tensor, f: int, count: int) -> list[int]:
    """Pick ``count`` rows one at a time, each the Krum winner among the remaining rows
    (neighbour count ``max(|R| - f - 2, 1)``, ties to the lower index)."""
    remaining = list(range(d2.shape[0]))
    chosen: list[int] = []
    for _ in range(count):
        if len(remaining) == 1:
            chosen.append(remaining.pop())
            break
        idx = torch.tensor(remaining)
        sub = d2[idx][:, idx].clone()  # [r, r]
        sub.fill_diagonal_(float("inf"))
        k = min(max(len(remaining) - f - 2, 1), len(remaining) - 1)
        scores = torch.sort(sub, dim=1).values[:, :k].sum(dim=1)  # [r]
        best = int(torch.argsort(scores, stable=True)[0])
        chosen.append(remaining.pop(best))
    return chosen


def bulyan(
    updates: Tensor, weights: Tensor, ctx: RoundContext | None = None, *, f: int
) -> Aggregate:
    """Bulyan; rows not among the ``theta`` selected are ``excluded``."""
    check_stack(updates, weights)
    n = updates.shape[0]
    if f < 0 or n < 4 * f + 3:
        raise AggregationError(f"Bulyan needs n >= 4f + 3 (and f >= 0); got n={n}, f={f}")
    theta = n - 2 * f
    beta = theta - 2 * f
    chosen = _iterated_krum(pairwise_sq_distances(updates), f, theta)
    s = as64(updates[sorted(chosen)])  # [theta, d]
    med = coordinate_median(s)  # [d]
    closest = torch.argsort((s - med).abs(), dim=0, stable=True)[:beta]  # [beta, d]
    v = s.gather(0, closest).mean(dim=0)  # [d]
    excluded = tuple(i for i in range(n) if i not in set(chosen))
    return Aggregate(
        v.to(updates.dtype), excluded, {"distance": row_distances(updates, v).tolist()}
    )
