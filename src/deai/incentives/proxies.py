"""Cheap contribution proxies: loss reduction and cosine similarity to the aggregate.

* :func:`loss_reduction`: φ_i = v({i}) − v(∅), the utility gain of applying update i alone to
  the global model (with v = −validation loss this is the loss reduction used as a
  contribution metric by FAIR, Deng et al. 2021 INFOCOM, and Han et al. 2022 AAAI). Cost:
  n + 1 evaluations. It ignores interactions: two redundant updates are both paid in full.
* :func:`cosine_to_aggregate`: φ_i = cos(u_i, aggregate(U)), how well update i agrees with the
  round's aggregate (the similarity score behind FLTrust and FoolsGold, used as a contribution
  proxy). Cost: no utility evaluation, one aggregation. It sees direction only, not data size
  or the validation data; a free-rider who copies the previous aggregate scores high, and when
  attackers steer the aggregate they also steer the proxy, so use it behind a robust
  aggregator.

Both are deterministic and need no seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.incentives.game import CoalitionUtility


def loss_reduction(game: CoalitionUtility) -> Tensor:
    """``v({i}) − v(∅)`` for every player. Returns float64 ``Tensor[n]``."""
    v_empty = game.empty()
    values = [game.value(1 << i) - v_empty for i in range(game.n)]
    return torch.tensor(values, dtype=torch.float64)


def cosine_to_aggregate(game: CoalitionUtility, *, eps: float = 1e-12) -> Tensor:
    """Cosine similarity of each update to the grand aggregate. Returns float64 ``Tensor[n]``.

    A zero update (or a zero aggregate) has similarity 0.
    """
    updates = game.updates.to(torch.float64)  # [n, d]
    agg = game.aggregate_all().to(torch.float64)  # [d]
    norms = updates.norm(dim=1) * agg.norm()  # [n]
    dots = updates @ agg  # [n]
    return torch.where(norms > eps, dots / norms.clamp_min(eps), torch.zeros_like(dots))
