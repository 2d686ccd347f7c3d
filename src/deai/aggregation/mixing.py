"""Pre-aggregation mixing: make honest rows alike before a robust rule looks at them.

Robust rules (median, trimmed mean, Krum) assume honest rows are close to each other; with
non-IID data they are not, and the rule throws away the honest rows that carry a rare
class. Mixing averages each row with rows near it first, which shrinks honest spread by
about the mixing factor while an attacker's row can only be averaged in, not amplified.

* :func:`nearest_neighbour_mixing` (NNM, Allouah, Farhadkhani, Guerraoui, Gupta, Pinot,
  Stephan, AISTATS 2023, "Fixing by mixing"): row ``i`` becomes the mean of its ``m - f``
  nearest rows (itself included), ``m`` the rows with positive weight. Deterministic.
  Cost ``O(m^2 d)``.
* :func:`bucketing` (Karimireddy, He, Jaggi, ICLR 2022, "Byzantine-robust learning on
  heterogeneous datasets via bucketing"): shuffle the rows with a public seed and average
  buckets of ``s`` rows. Cost ``O(m d)``.

Both return float64 rows and keep zero-weight rows out (they stay as they were and keep
weight zero).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64
from deai.errors import AggregationError


def nearest_neighbour_mixing(x: Tensor, weights: Tensor, f: int, weighted: bool = False) -> Tensor:
    """Every positive-weight row replaced by the mean of its ``m - f`` nearest positive-weight
    rows (L2, ties to the lower index), float64 ``[n, d]``. ``weighted``: the mean is
    weighted by ``weights`` (a provider with more examples counts more in every
    neighbourhood it is in, as it does in FedAvg's mean); the paper's mean is unweighted."""
    x64 = as64(x)
    live = torch.nonzero(as64(weights) > 0).flatten()
    m = int(live.numel())
    if f < 0 or (m and f >= m):
        raise AggregationError(f"nearest-neighbour mixing needs 0 <= f < m; got {f=}, {m=}")
    out = x64.clone()
    if m <= 1:
        return out
    rows = x64[live]  # [m, d]
    d2 = torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist")  # [m, m] exact
    order = torch.argsort(d2, dim=1, stable=True)[:, : m - f]  # [m, m - f]
    mix = torch.zeros(m, m, dtype=torch.float64)  # row i: 1 / (m - f) on its neighbours
    mix.scatter_(1, order, 1.0 / (m - f))
    if weighted:  # row i: w_j / sum of its neighbours' w on each neighbour j
        mix = mix * as64(weights)[live].unsqueeze(0)
        mix = mix / mix.sum(dim=1, keepdim=True)
    out[live] = mix @ rows
    return out


def bucketing(x: Tensor, weights: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Bucket means ``[b, d]`` (float64) of the positive-weight rows shuffled with ``seed``
    (public: every validator derives the same buckets), and each bucket's total weight."""
    if size < 1:
        raise AggregationError(f"bucket size must be >= 1, got {size}")
    w = as64(weights)
    live = torch.nonzero(w > 0).flatten()
    gen = torch.Generator().manual_seed(seed)
    perm = live[torch.randperm(int(live.numel()), generator=gen)]
    x64 = as64(x)
    means, totals = [], []
    for start in range(0, int(perm.numel()), size):
        idx = perm[start : start + size]
        means.append(x64[idx].mean(dim=0))
        totals.append(w[idx].sum())
    if not means:
        raise AggregationError("bucketing needs at least one row with positive weight")
    return torch.stack(means), torch.stack(totals)
