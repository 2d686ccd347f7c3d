"""Scenario files: TOML validated by pydantic.

A scenario names the nodes and their roles, the data split, the model, the algorithm,
the network and the seed. :func:`load_scenario` turns any mistake into one
:class:`ConfigError` whose message names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deai.aggregation.registry import AggregatorName
from deai.attacks.spec import AttackName, AttackSpec
from deai.compression.registry import CodecName
from deai.errors import ConfigError
from deai.incentives.evaluators import EvaluatorName
from deai.learning.algorithms import AlgorithmName, Weighting
from deai.learning.data import DatasetName, Splits, load_dataset
from deai.learning.models import ModelName
from deai.learning.partition import PartitionConfig, PartitionName
from deai.learning.topology import TopologyName

PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Role(StrEnum):
    PROVIDER = "provider"
    VALIDATOR = "validator"


class DataSection(_Strict):
    dataset: DatasetName = DatasetName.DIGITS
    partition: PartitionName = PartitionName.DIRICHLET
    alpha: PositiveFloat = 0.5  # Dirichlet concentration for label / quantity skew
    shards_per_provider: Annotated[int, Field(ge=1)] = 2
    min_examples: Annotated[int, Field(ge=1)] = 2  # every provider holds at least this many
    test_fraction: Annotated[float, Field(gt=0, lt=0.8)] = 0.2
    validation_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.1  # the requester's data
    n_samples: Annotated[int, Field(ge=40)] = 2000  # synthetic only
    n_features: Annotated[int, Field(ge=2)] = 20  # synthetic only
    n_classes: Annotated[int, Field(ge=2)] = 4  # synthetic only

    def load(self, seed: int) -> Splits:
        """The dataset with its held-out test and validation splits."""
        return load_dataset(
            self.dataset,
            seed=seed,
            test_fraction=self.test_fraction,
            validation_fraction=self.validation_fraction,
            n_samples=self.n_samples,
            n_features=self.n_features,
            n_classes=self.n_classes,
        )

    def partition_config(self) -> PartitionConfig:
        return PartitionConfig(
            self.partition, self.alpha, self.shards_per_provider, self.min_examples
        )


class ModelSection(_Strict):
    name: ModelName = ModelName.MLP
    hidden: list[Annotated[int, Field(ge=1)]] = [64]
    channels: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (8, 16)


class AlgorithmSection(_Strict):
    name: AlgorithmName = AlgorithmName.FEDAVG
    epochs: Annotated[int, Field(ge=1)] = 1  # local epochs per round (if steps is unset)
    steps: Annotated[int, Field(ge=1)] | None = None  # local steps per round instead of epochs
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: PositiveFloat = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    prox_mu: Annotated[float, Field(ge=0)] = 0.0  # FedProx
    server_lr: PositiveFloat = 1.0
    weighting: Weighting = Weighting.EXAMPLES
    topology: TopologyName = TopologyName.RING  # dpsgd only
    participation: Annotated[float, Field(gt=0, le=1)] = 1.0


class NetworkSection(_Strict):
    bandwidth_mbps: tuple[PositiveFloat, PositiveFloat] = (10.0, 100.0)
    latency_ms: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] = (10.0, 50.0)
    samples_per_s: PositiveFloat = 2000.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    straggler_fraction: Fraction = 0.0
    straggler_slowdown: Annotated[float, Field(ge=1)] = 4.0
    round_timeout_s: PositiveFloat = 600.0

    @model_validator(mode="after")
    def _ranges(self) -> NetworkSection:
        for name in ("bandwidth_mbps", "latency_ms"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be [low, high] with low <= high, got [{lo}, {hi}]")
        return self


class ValidationSection(_Strict):
    max_update_norm: PositiveFloat = 1000.0
    max_examples: Annotated[int, Field(ge=1)] = 10_000  # claimed counts above this are rejected


class NodeGroup(_Strict):
    role: Role
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    behaviour: str = "honest"  # providers: "honest" or a fault name (nan, huge_norm, ...)
    attack: AttackName | None = None  # providers: a strategic attack (deai.attacks)
    attack_params: dict[str, float | str] = {}  # overrides of the attack's defaults
    sybil: bool = False  # the group is ONE attacker with `count` identities sending clones
    jitter: Annotated[float, Field(ge=0)] = 0.0  # noise on each Sybil clone

    @model_validator(mode="after")
    def _behaviour(self) -> NodeGroup:
        from deai.sim.behaviours import behaviour_names

        if self.role is Role.PROVIDER and self.behaviour not in behaviour_names():
            raise ValueError(
                f"behaviour: got {self.behaviour!r}; allowed: {', '.join(behaviour_names())}"
            )
        if self.role is Role.VALIDATOR and self.behaviour not in ("honest", "liar"):
            raise ValueError(
                f"behaviour: a validator is 'honest' or 'liar', not {self.behaviour!r}"
            )
        if self.role is Role.VALIDATOR and self.attack is not None:
            raise ValueError("attack: only providers take an attack")
        if self.attack is not None:
            if self.behaviour != "honest":
                raise ValueError("a group takes either a fault behaviour or an attack, not both")
            try:
                AttackSpec(self.attack, self.attack_params, 1, self.jitter)
            except ConfigError as e:
                raise ValueError(f"attack_params: {e}") from None
        return self

    def attack_spec(self) -> AttackSpec | None:
        if self.attack is None:
            return None
        return AttackSpec(self.attack, self.attack_params, 1, self.jitter)


class AggregationSection(_Strict):
    f: Annotated[int, Field(ge=0)] = 0  # attackers assumed (krum, multi_krum, bulyan, trim)
    multi_krum_m: Annotated[int, Field(ge=1)] | None = None
    trim_fraction: Annotated[float, Field(ge=0, lt=0.5)] | None = None  # trimmed_mean
    norm_bound: PositiveFloat | None = None  # norm_bounding; unset: the median norm
    default_trim_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.2  # the default rule
    default_use_weights: bool = False  # the default rule: weight by capped example counts


class CompressionSection(_Strict):
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.01  # top-k / random-k keep fraction
    bits: Annotated[int, Field(ge=1, le=16)] = 4  # quantizer bits per value
    levels: Annotated[int, Field(ge=1)] = 16  # QSGD levels
    rank: Annotated[int, Field(ge=1)] = 4  # PowerSGD rank
    error_feedback: bool = True  # keep what the codec dropped and add it next round


class PrivacySection(_Strict):
    clip: PositiveFloat = 1.0  # L2 bound on each provider's update
    noise_multiplier: Annotated[float, Field(ge=0)] = 0.0  # z: noise std on the sum = z * clip
    epsilon: PositiveFloat | None = None  # the job's budget; unset: account, never stop
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    secure_aggregation: bool = False  # masked updates: validators learn only the sum
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.6  # share of drawn providers a round
    # needs (SecAgg's t; without it, fewer arrivals would carry too little noise: no update)


class LedgerSection(_Strict):
    budget_eth: PositiveFloat = 10.0  # the requester's escrow for the job
    stake_eth: PositiveFloat = 5.0  # each validator's stake
    committee: Annotated[int, Field(ge=1, le=9)] = 3  # validators per round's committee
    evaluator: EvaluatorName = EvaluatorName.LOO  # contribution evaluator for payouts


class Scenario(_Strict):
    name: str = "scenario"
    seed: int = 0
    rounds: Annotated[int, Field(ge=1, le=100_000)] = 10
    aggregator: AggregatorName = AggregatorName.MEAN  # the aggregation rule (deai.aggregation)
    codec: CodecName = CodecName.IDENTITY  # the update codec (deai.compression)
    aggregation: AggregationSection = AggregationSection()
    compression: CompressionSection = CompressionSection()
    privacy: PrivacySection | None = None  # user-level DP-FedAvg (and secure aggregation)
    ledger: LedgerSection | None = None  # settle every round on an embedded chain
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    algorithm: AlgorithmSection = AlgorithmSection()
    network: NetworkSection = NetworkSection()
    validation: ValidationSection = ValidationSection()
    nodes: list[NodeGroup] = [
        NodeGroup(role=Role.PROVIDER, count=10),
        NodeGroup(role=Role.VALIDATOR, count=1),
    ]

    @model_validator(mode="after")
    def _roles(self) -> Scenario:
        if self.count(Role.PROVIDER) < 1:
            raise ValueError("nodes: at least one provider group is required")
        if self.count(Role.VALIDATOR) < 1:
            raise ValueError("nodes: at least one validator group is required")
        if self.algorithm.name is AlgorithmName.DPSGD and self.count(Role.PROVIDER) < 2:
            raise ValueError("dpsgd needs at least 2 providers")
        if self.ledger is not None and self.count(Role.VALIDATOR) > 9:
            raise ValueError("ledger: the embedded chain funds at most 9 validators")
        if self.ledger is not None and self.algorithm.name is AlgorithmName.DPSGD:
            raise ValueError("ledger: on-chain settlement needs a server algorithm, not dpsgd")
        if self.privacy is not None and self.algorithm.name is AlgorithmName.DPSGD:
            raise ValueError("privacy: DP-FedAvg needs a server algorithm, not dpsgd")
        return self

    def count(self, role: Role) -> int:
        return sum(g.count for g in self.nodes if g.role is role)


def describe_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown field (value {err['input']!r}); check the spelling"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    allowed = (err.get("ctx") or {}).get("expected")
    tail = f"; allowed: {allowed}" if allowed and str(allowed) not in msg else ""
    if err["type"] == "value_error":
        return f"{loc}: {msg.removeprefix('Value error, ')}"
    return f"{loc}: got {err['input']!r}: {msg}{tail}"


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        lines = [describe_error(dict(err)) for err in e.errors()]
        raise ConfigError(f"{source}: invalid scenario\n  " + "\n  ".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_scenario(data, str(path))
