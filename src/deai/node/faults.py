"""Faulty (not strategic) provider behaviours, injected through the Behaviour hook.

They exercise the validator's peer-input checks: every one of them must be rejected and
recorded, and the round must go on without it. Strategic attacks live in
``deai.attacks``.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import Tensor


class Fault(StrEnum):
    NAN = "nan"  # the update contains NaN
    HUGE_NORM = "huge_norm"  # the update is scaled far past any sane norm
    WRONG_SHAPE = "wrong_shape"  # the update has the wrong length
    INFLATED_COUNT = "inflated_count"  # claims far more examples than allowed


class FaultyBehaviour:
    def __init__(self, fault: Fault) -> None:
        self.fault = fault

    def local_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def update(self, delta: Tensor, round_: int) -> Tensor:
        if self.fault is Fault.NAN:
            return torch.full_like(delta, float("nan"))
        if self.fault is Fault.HUGE_NORM:
            return delta * 1e9
        if self.fault is Fault.WRONG_SHAPE:
            return delta[:-1]
        return delta

    def claim(self, num_examples: int) -> int:
        return 10**9 if self.fault is Fault.INFLATED_COUNT else num_examples
