"""Cross-device populations: many providers, a cohort drawn each round, lazy nodes.

With ``simulation.cohort`` set, a job's providers are a population from which every round
draws ``cohort`` of them (the spec's public, seeded draw: ``algorithm.participation`` is
``cohort / providers``). A provider exists in the simulation only once it is first drawn:
the engine builds its roles then (:meth:`deai.sim.engine.Simulation.add_lazy`), and the
device checks in: it receives the job's ``OpenJob`` from the requester at that moment
(counted in bytes; its transfer is not timed, as devices check in between rounds). Its
data is a list of indices into the shared training split, gathered when it trains and
dropped once its training request is built. Memory therefore grows with the providers
drawn (at most ``cohort x rounds``), not with the population; the population is capped
by :func:`memory_estimate`, not by a per-group constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.node.base import Requester
from deai.node.hooks import Behaviour, RoundObserver
from deai.node.messages import OpenJob, TrainTask
from deai.node.provider import Provider

# Calibrated on the cross-device benchmark (100,000 providers, 9,589 drawn: 1.05 GB
# estimated, 1.12 GB peak RSS measured): the simulator's bookkeeping per provider in the
# population (its plan entry, link profile, partition indices, byte counters) and per
# provider once drawn (its roles, context, encoder).
BYTES_PER_MEMBER = 2_000
BYTES_PER_DRAWN = 12_000
BASE_BYTES = 600 * 2**20  # the interpreter, torch, the model and the event loop


@dataclass(frozen=True)
class MemoryEstimate:
    population: int
    drawn: int  # providers that can be materialized over the job
    data_bytes: int
    total_bytes: int

    def describe(self) -> str:
        gb = self.total_bytes / 2**30
        return (
            f"{gb:.2f} GB = {BASE_BYTES / 2**30:.2f} GB base + {self.data_bytes / 2**30:.2f} GB "
            f"data + {self.population:,} providers x {BYTES_PER_MEMBER:,} B + "
            f"{self.drawn:,} drawn x {BYTES_PER_DRAWN:,} B"
        )


def memory_estimate(population: int, drawn: int, data: Dataset, batch_rows: int) -> MemoryEstimate:
    """The run's peak memory, as a model (the benchmark measures the real peak): the
    dataset (held once), per-provider bookkeeping, and one batched training computation
    over ``batch_rows`` examples (padded inputs, per-example activations, gradients)."""
    per_row = int(np.prod(data.input_shape)) * 4 + 8
    data_bytes = len(data) * per_row + 4 * batch_rows * per_row
    total = BASE_BYTES + data_bytes + population * BYTES_PER_MEMBER + drawn * BYTES_PER_DRAWN
    return MemoryEstimate(population, drawn, data_bytes, total)


def cohort_participation(cohort: int, population: int) -> float:
    """The participation share whose draw is exactly ``cohort`` providers."""
    if cohort > population:
        raise ConfigError(
            f"simulation.cohort: {cohort:,} is more than the {population:,} providers"
        )
    p = cohort / population
    while p > 0 and max(1, math.ceil(p * population)) > cohort:
        p = math.nextafter(p, 0.0)  # float rounding may have pushed ceil one above
    return p


class LazyProvider(Provider):
    """A provider whose data is gathered from the shared split only while it trains."""

    def __init__(
        self,
        node_id: str,
        train: Dataset,
        indices: np.ndarray,
        *,
        behaviour: Behaviour | None = None,
        observer: RoundObserver | None = None,
    ) -> None:
        self._train, self._indices = train, indices
        self._xy: tuple[Tensor, Tensor] | None = None
        self._count = len(indices)
        empty = Dataset(
            train.x[:0], train.y[:0], train.num_classes, train.input_shape, train.name
        )  # the schema checks see the data's shape and classes, no examples
        super().__init__(node_id, empty, behaviour=behaviour, observer=observer)

    def _materialized(self) -> tuple[Tensor, Tensor]:
        if self._xy is None:
            idx = torch.as_tensor(self._indices, dtype=torch.long)
            self._xy = self.behaviour.local_data(self._train.x[idx], self._train.y[idx])
            self._count = int(self._xy[1].shape[0])
        return self._xy

    # Provider reads self.x / self.y; its constructor's assignment (of the empty
    # placeholder's data) is ignored
    @property
    def x(self) -> Tensor:
        return self._materialized()[0]

    @x.setter
    def x(self, _value: Tensor) -> None:
        pass

    @property
    def y(self) -> Tensor:
        return self._materialized()[1]

    @y.setter
    def y(self, _value: Tensor) -> None:
        pass

    @property
    def num_examples(self) -> int:
        return self._count

    def on_train_task(self, sender: str, msg: TrainTask) -> None:
        super().on_train_task(sender, msg)
        self._xy = None  # the training request holds the tensors until it has run


class CrossDeviceRequester(Requester):
    """Announces the job to the validators only; a provider gets it when first drawn
    (the engine's check-in), not all of the population at the start."""

    def start(self) -> None:
        msg = self.open_job()
        for node in self.spec.validators:
            self.ctx.send(node, msg)

    def open_job(self) -> OpenJob:
        return OpenJob(self.spec.job_id, self.spec.to_json(), self.spec.spec_hash())


def check_cross_device(spec: JobSpec, secure: bool) -> None:
    if spec.algorithm.gossip:
        raise ConfigError("simulation.cohort: gossip (D-PSGD) needs every provider every round")
    if secure:
        raise ConfigError(
            "simulation.cohort: secure aggregation sets up keys with every provider in advance; "
            "run it without a cohort"
        )
