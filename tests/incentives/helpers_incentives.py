"""Table games for the incentives tests.

A table game over n players is embedded in a :class:`CoalitionUtility`: update i is the i-th
unit vector, the aggregate is the plain sum (so global + aggregate is S's indicator vector when
global = 0) and ``evaluate`` decodes the indicator into a bitmask and looks the value up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from deai.incentives import CoalitionUtility


def _sum(updates: Tensor, weights: Tensor) -> Tensor:
    return updates.sum(0)


def table_game(values: Sequence[float]) -> CoalitionUtility:
    """The game with v(mask) = values[mask]; len(values) must be 2^n."""
    n = len(values).bit_length() - 1
    assert len(values) == 1 << n

    def evaluate(params: Tensor) -> float:
        mask = sum(1 << i for i in range(n) if params[i] > 0.5)
        return float(values[mask])

    return CoalitionUtility(
        torch.zeros(n, dtype=torch.float64),
        torch.eye(n, dtype=torch.float64),
        torch.ones(n, dtype=torch.float64),
        evaluate,
        _sum,
    )


def set_game(n: int, fn: Callable[[frozenset[int]], float]) -> CoalitionUtility:
    """The game with v(S) = fn(S)."""
    return table_game([fn(frozenset(i for i in range(n) if m >> i & 1)) for m in range(1 << n)])
