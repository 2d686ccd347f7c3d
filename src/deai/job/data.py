"""Where a party's data comes from: a registered dataset, its split and its partition.

Used by the simulation (every simulated provider's shard) and by a deployed node's
``node.toml`` (its own shard and the requester's validation split), so both load data the
same way.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deai.job.types import Float, PositiveFloat, PositiveInt
from deai.learning.data import Splits, load, split
from deai.learning.partition import PartitionConfig, PartitionName


class DataSource(BaseModel):
    """Where the simulated providers' data comes from (other keys: the dataset's
    parameters, e.g. ``path`` and ``label`` for csv)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_enum_values=False)

    dataset: str = "digits"  # a name in deai.registry.datasets
    partition: PartitionName = PartitionName.DIRICHLET
    alpha: PositiveFloat = 0.5  # Dirichlet concentration for label / quantity skew
    shards_per_provider: PositiveInt = 2
    min_examples: PositiveInt = 2  # every provider holds at least this many
    test_fraction: Annotated[Float, Field(gt=0, lt=0.8)] = 0.2
    validation_fraction: Annotated[Float, Field(ge=0, lt=0.5)] = 0.1  # the requester's data

    @model_validator(mode="after")
    def _params(self) -> DataSource:
        from deai.registry import datasets

        extra = self.__pydantic_extra__
        assert extra is not None
        clean = datasets.validate_params(self.dataset, dict(extra))
        extra.clear()
        extra.update(clean)
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    def load(self, seed: int) -> Splits:
        """The dataset with its held-out test and validation splits."""
        return split(
            load(self.dataset, self.params, seed),
            seed,
            self.test_fraction,
            self.validation_fraction,
        )

    def partition_config(self) -> PartitionConfig:
        return PartitionConfig(
            self.partition, self.alpha, self.shards_per_provider, self.min_examples
        )
