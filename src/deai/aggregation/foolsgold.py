"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020, "The limitations of federated learning
in Sybil settings"; arXiv:1808.04866).

Sybils that push one goal send similar updates round after round, while honest clients with
their own data differ. FoolsGold keeps, per sender id, the sum of all its past updates (its
history), computes pairwise cosine similarities of the histories, "pardons" honest rows that
merely resemble a more suspicious one, and maps ``1 - max similarity`` through a logit to a
weight in ``[0, 1]``. Threat model: Sybils share a goal and thus a direction; the number of
Sybils is not bounded. Weak spots: honest clients with near-identical data are down-weighted
(IID data); an attacker that controls one identity is untouched (pair it with a robust
rule); Sybils adding independent noise each round are only caught as the noise averages out
of the history. Cost ``O(n^2 d)``. Rows of weight zero are ``excluded``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def pardoned_similarity(history: Tensor) -> Tensor:
    """FoolsGold's pairwise cosine similarities of ``history[n, d]`` after pardoning, float64
    ``[n, n]`` with a zero diagonal. A zero history has similarity 0 to everything.

    Pardoning: if ``max_i < max_j`` (row ``i`` is less suspicious than ``j``) and ``max_j > 0``,
    ``cs_ij <- cs_ij * max_i / max_j``.
    """
    h = as64(history)
    norms = torch.linalg.vector_norm(h, dim=1)  # [n]
    unit = torch.where(norms.unsqueeze(1) > 0, h / norms.clamp(min=1e-300).unsqueeze(1), 0.0)
    cs = unit @ unit.T  # [n, n]
    cs.fill_diagonal_(0.0)
    mx = cs.max(dim=1).values  # [n]
    pardon = (mx.unsqueeze(1) < mx.unsqueeze(0)) & (mx.unsqueeze(0) > 0)  # [n, n] (i, j)
    ratio = mx.unsqueeze(1) / mx.clamp(min=1e-300).unsqueeze(0)
    return torch.where(pardon, cs * ratio, cs)


def foolsgold_weights(history: Tensor, kappa: float = 1.0) -> Tensor:
    """FoolsGold's per-row weights in ``[0, 1]`` (float64 ``[n]``) from the histories.

    ``v_i = 1 - max_j cs_ij`` clipped to ``[0, 1]``, divided by its maximum, ``1 -> 0.99``,
    then ``kappa (ln(v / (1 - v)) + 0.5)`` clipped to ``[0, 1]``. A single row gets 1; if every
    row is a duplicate of another (all ``v = 0``) every weight is 0.
    """
    if kappa <= 0.0:
        raise AggregationError(f"FoolsGold needs kappa > 0, got {kappa}")
    n = history.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    v = (1.0 - pardoned_similarity(history).max(dim=1).values).clamp(0.0, 1.0)
    top = float(v.max())
    if top == 0.0:
        return torch.zeros(n, dtype=torch.float64)
    v = (v / top).clamp(max=0.99)
    with torch.no_grad():
        logit = kappa * (torch.log(v / (1.0 - v)) + 0.5)  # log(0) = -inf, clipped below
    return logit.clamp(0.0, 1.0)


class SimilarityHistory:
    """Per-sender sums of past updates (float64), the state FoolsGold-style rules keep."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}

    def add(self, updates: Tensor, senders: tuple[str, ...]) -> Tensor:
        """Add this round's rows to their senders' histories and return the histories
        ``[n, d]`` of these senders (in row order). Validates before changing any state."""
        n, d = updates.shape
        if len(senders) != n:
            raise AggregationError(f"need one sender id per row: {len(senders)} ids for {n} rows")
        if len(set(senders)) != n:
            raise AggregationError("sender ids must be distinct within a round")
        for s in senders:
            if s in self._sums and self._sums[s].shape != (d,):
                raise AggregationError(f"sender {s!r} changed update dimension to {d}")
        x = as64(updates)
        for i, s in enumerate(senders):
            self._sums[s] = self._sums.get(s, torch.zeros(d, dtype=torch.float64)) + x[i]
        return torch.stack([self._sums[s] for s in senders])

    def reset(self) -> None:
        self._sums.clear()

    def __len__(self) -> int:
        return len(self._sums)


class FoolsGold:
    """Stateful FoolsGold: ``__call__(updates, weights, ctx)`` with ``ctx.senders`` set.

    The result is ``sum_i a_i w_i x_i / sum_i a_i w_i`` with ``a_i`` the FoolsGold weight and
    ``w_i`` the given weights; zero when every row has weight zero. ``scores["foolsgold"]``
    holds ``a_i``. (The paper's optional per-feature importance weighting is not used.)
    """

    def __init__(self, kappa: float = 1.0) -> None:
        if kappa <= 0.0:
            raise AggregationError(f"FoolsGold needs kappa > 0, got {kappa}")
        self.kappa = kappa
        self.history = SimilarityHistory()

    def __call__(
        self, updates: Tensor, weights: Tensor, ctx: RoundContext | None = None
    ) -> Aggregate:
        check_stack(updates, weights)
        if ctx is None or not ctx.senders:
            raise AggregationError("FoolsGold needs ctx.senders (one id per row) to keep history")
        alpha = foolsgold_weights(self.history.add(updates, ctx.senders), self.kappa)
        combined = alpha * as64(weights)
        excluded = tuple(int(i) for i in torch.nonzero(combined == 0).flatten())
        scores = {"foolsgold": alpha.tolist()}
        total = float(combined.sum())
        if total == 0.0:
            return Aggregate(torch.zeros(updates.shape[1], dtype=updates.dtype), excluded, scores)
        v = (combined / total) @ as64(updates)
        return Aggregate(v.to(updates.dtype), excluded, scores)
