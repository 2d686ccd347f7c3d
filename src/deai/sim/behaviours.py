"""What a scenario's provider group does: honest, a fault, or a strategic attack.

Faults (``deai.node.faults``) exercise peer-input validation. Attacks come from
``deai.attacks``: their data-level part changes what the node trains on (here, through the
``Behaviour`` hook); their update-level part is applied by the simulated adversary on the
transport (``deai.sim.adversary``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.attacks.spec import AttackSpec, data_attack


class DataPoisoning:
    """A provider that trains on poisoned data and otherwise follows the protocol."""

    def __init__(self, spec: AttackSpec, seed: int) -> None:
        self.transform = data_attack(spec)
        self.gen = torch.Generator().manual_seed(seed)

    def local_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return (x, y) if self.transform is None else self.transform(x, y, self.gen)

    def update(self, delta: Tensor, round_: int) -> Tensor:
        return delta

    def claim(self, num_examples: int) -> int:
        return num_examples
