"""The Python API tour: the same jobs as the TOML examples, built in Python, plus your own
data, your own model and your own attacker.

Run it with ``python examples/python_api.py`` (or ``--quick`` for 3 rounds each).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import deai
import deai.registry

HERE = Path(__file__).parent
ROUNDS = 3 if "--quick" in sys.argv else None


def rounds(n: int) -> int:
    return ROUNDS or n


# 1. A job in Python is the same object as the TOML file ------------------------------
wine = deai.JobSpec(
    name="wine",
    rounds=rounds(15),
    model=deai.ModelSpec(name="mlp", hidden=[32]),
    algorithm=deai.AlgorithmSpec(name="fedavg", epochs=5, batch_size=8, lr=0.05),
    aggregation=deai.AggregationSpec(rule="default"),
)
world = deai.SimulationSection(
    data=deai.DataSource(dataset="wine", partition="dirichlet", alpha=1.0, test_fraction=0.25),
    nodes=[deai.NodeGroup(role="provider", count=6), deai.NodeGroup(role="validator")],
)
from_toml = deai.load(HERE / "wine.toml")
assert from_toml.job == wine.model_copy(update={"rounds": 15}), "the TOML file is this object"
assert from_toml.simulation == world

result = deai.simulate(wine, world)
print(f"wine: accuracy {result.final_accuracy:.3f}, model {result.model_hash[:12]}")

# 2. Breast cancer, settled on an embedded chain, one attacker ------------------------
cancer = deai.load(HERE / "breast_cancer.toml")
result = deai.simulate(cancer.model_copy(update={"rounds": rounds(10)}))
attackers = {p.provider: p.paid_wei for p in result.payouts if p.behaviour.startswith("attack")}
print(f"breast_cancer: accuracy {result.final_accuracy:.3f}, attackers paid {attackers}")

# 3. A CSV file with a named label column ---------------------------------------------
iris = deai.JobSpec(name="iris", rounds=rounds(10), model=deai.ModelSpec(name="mlp", hidden=[16]))
csv_world = deai.SimulationSection(
    data=deai.DataSource(
        dataset="csv", path=str(HERE / "data" / "iris.csv"), label="species", test_fraction=0.3
    ),
    nodes=[deai.NodeGroup(role="provider", count=5), deai.NodeGroup(role="validator")],
)
print(f"iris.csv: accuracy {deai.simulate(iris, csv_world).final_accuracy:.3f}")


# 4. Your own arrays, your own model, your own attacker --------------------------------
@deai.models.register("tiny-net", replace=True)
def tiny_net(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """A one-hidden-layer net with a tanh (any nn.Module factory works)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.Tanh(),
        nn.Linear(width, num_classes),
    )  # fmt: skip


class ScaledNoise:
    """A free-rider that sends noise the size of a real update."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def local_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def update(self, delta: Tensor, round_: int) -> Tensor:
        return torch.randn(delta.shape, generator=self.gen) * delta.norm() / delta.numel() ** 0.5

    def claim(self, num_examples: int) -> int:
        return num_examples


deai.registry.attacks.register("scaled-noise", replace=True)(lambda seed: ScaledNoise(seed))

rng = np.random.default_rng(0)
x = rng.normal(size=(600, 5)).astype(np.float32)
y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
mine = deai.from_arrays(x, y, name="my-arrays")
job = deai.JobSpec(
    name="mine",
    rounds=rounds(8),
    model=deai.ModelSpec(name="tiny-net", width=8),
    aggregation=deai.AggregationSpec(rule="median"),
)
nodes = [
    deai.NodeGroup(role="provider", count=8),
    deai.NodeGroup(role="provider", count=2, attack="scaled-noise"),
    deai.NodeGroup(role="validator"),
]
result = deai.simulate(job, deai.SimulationSection(nodes=nodes), data=mine)
print(
    f"own data/model/attack: accuracy {result.final_accuracy:.3f}; attackers "
    f"{result.metrics['attackers']}"
)

# a spec round-trips through its canonical JSON, and its hash names the job everywhere
assert deai.JobSpec.model_validate_json(wine.canonical_json()) == wine
