"""Leave-one-out contribution: φ_i = v(N) − v(N ∖ {i}).

The classic data-valuation baseline (Cook 1977's influence by deletion; the LOO column of
Ghorbani & Zou 2019). Cost: n + 1 utility evaluations, deterministic, no sampling.

Assumptions and known weakness: LOO measures only the last marginal. When two providers hold
similar data each one's LOO is near zero (each is redundant given the other), so LOO under-pays
duplicated but useful data and is easy to game by colluders who split one dataset; it also
misses the value of an update that only helps in small coalitions. It is kept as a cheap
reference, not as the default payout rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.incentives.game import CoalitionUtility


def leave_one_out(game: CoalitionUtility) -> Tensor:
    """``v(N) − v(N ∖ {i})`` for every player. Returns float64 ``Tensor[n]``."""
    full = game.full_mask
    v_full = game.grand()
    values = [v_full - game.value(full & ~(1 << i)) for i in range(game.n)]
    return torch.tensor(values, dtype=torch.float64)
