"""The job specification: everything that decides a job's result, in one frozen,
content-addressed object.

A :class:`JobSpec` holds the data schema, the model, the algorithm and its
hyper-parameters, the aggregation rule, the update codec, privacy, the contribution
evaluator and payout rule, on-chain settlement, the validation policy and (once bound)
the parties. Every validator derives its whole behaviour from the spec alone; nothing that
changes the model lives in a node's local configuration. TOML and Python give the same
object::

    spec = JobSpec(rounds=20, model=ModelSpec(name="mlp", hidden=[64]))
    spec == JobSpec.model_validate(tomllib.loads(text))

The spec's hash is the sha256 of its canonical JSON (:meth:`JobSpec.canonical_json`); the
job id is the name plus a prefix of that hash, so the same spec (and requester nonce)
names the same job everywhere, and a different one can never be confused with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deai.errors import ConfigError
from deai.incentives.evaluators import EvaluatorName
from deai.job.types import (
    Float,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Seed,
)
from deai.learning.algorithms import (
    AlgorithmName,
    Weighting,
    local_config,
    server_step_size,
    weighting_for,
)
from deai.learning.topology import TopologyName
from deai.learning.train import LocalTrainConfig, Optimizer

MAX_ROUNDS = 100_000
MAX_PARTIES = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class _Open(BaseModel):
    """A section whose extra keys are a registry entry's parameters (validated and
    normalised by the registry, so defaults appear in the canonical JSON)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_enum_values=False)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    def _normalise(self, registry: Any, name: str, reserved: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        extra = self.__pydantic_extra__
        assert extra is not None
        raw = {k: v for k, v in extra.items() if k not in reserved}
        clean = registry.validate_params(name, raw)
        extra.clear()
        extra.update(clean)


# ---------------------------------------------------------------------------- sections
class Task(StrEnum):
    CLASSIFICATION = "classification"


class DataSchema(_Strict):
    """What every provider's data must look like. Filled from the dataset in simulation,
    from the requester's validation data on a real network."""

    input_shape: tuple[PositiveInt, ...] = Field(min_length=1, max_length=4)
    num_classes: Annotated[PositiveInt, Field(ge=2, le=100_000)]
    dtype: Literal["float32"] = "float32"
    task: Task = Task.CLASSIFICATION
    validation: str | None = None  # sha256 of the requester's validation data (safetensors)

    @field_validator("validation")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdef" for c in v)):
            raise ValueError(f"validation must be a sha256 hex digest, got {v!r}")
        return v


class ModelSpec(_Open):
    """A model by registry name; other keys are its parameters (e.g. ``hidden = [64]``)."""

    name: str = "mlp"

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        from deai.registry import models

        self._normalise(models, self.name)
        return self


class ServerOptimizer(StrEnum):
    """The server's step on the aggregated update (``deai.node.strategy``)."""

    SGD = "sgd"  # theta += server_lr * v, v with heavy-ball server_momentum (FedAvgM)
    NESTEROV = "nesterov"  # DiLoCo's outer Nesterov (server_lr 0.7, server_momentum 0.9)
    ADAMW = "adamw"  # AdamW on the mean update read as -gradient (data-parallel baseline)


# one shared frozen config per set of values: every provider asks every round
_local_config = lru_cache(maxsize=256, typed=True)(local_config)


class AlgorithmSpec(_Strict):
    """The training algorithm and its hyper-parameters (``deai.learning.algorithms``)."""

    name: AlgorithmName = AlgorithmName.FEDAVG
    epochs: Annotated[PositiveInt, Field(le=1000)] = 1  # local epochs (if steps is unset)
    steps: Annotated[PositiveInt, Field(le=1_000_000)] | None = None  # local steps instead
    batch_size: Annotated[PositiveInt, Field(le=65_536)] = 32
    lr: Annotated[PositiveFloat, Field(le=100)] = 0.1  # local SGD learning rate
    momentum: Annotated[Float, Field(ge=0, lt=1)] = 0.0  # local heavy-ball momentum
    prox_mu: NonNegativeFloat = 0.0  # FedProx proximal weight
    server_lr: Annotated[PositiveFloat, Field(le=100)] = 1.0  # step on the aggregate
    server_momentum: Annotated[Float, Field(ge=0, lt=1)] = 0.0  # FedAvgM (Hsu et al. 2019)
    weighting: Weighting = Weighting.EXAMPLES
    topology: TopologyName = TopologyName.RING  # dpsgd only
    participation: Annotated[Float, Field(gt=0, le=1)] = 1.0  # share of providers per round
    optimizer: Optimizer = Optimizer.SGD  # the local optimizer (adamw: DiLoCo's inner one)
    weight_decay: NonNegativeFloat = 0.0  # local AdamW decoupled weight decay
    clip_norm: PositiveFloat | None = None  # clip each local step's gradient norm
    server_optimizer: ServerOptimizer = ServerOptimizer.SGD  # the step on the aggregate

    @property
    def gossip(self) -> bool:
        return self.name is AlgorithmName.DPSGD

    def local(self) -> LocalTrainConfig:
        """What a provider runs each round (one shared frozen config per set of values:
        every provider asks every round)."""
        return _local_config(
            self.name,
            epochs=self.epochs,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            prox_mu=self.prox_mu,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            clip_norm=self.clip_norm,
        )

    def step_size(self) -> float:
        return server_step_size(self.name, self.lr, self.server_lr)

    def weights(self) -> Weighting:
        return weighting_for(self.name, self.weighting)


class AggregationSpec(_Open):
    """The aggregation rule by registry name; other keys are its parameters."""

    rule: str = "mean"

    @model_validator(mode="after")
    def _check(self) -> AggregationSpec:
        from deai.registry import aggregators

        self._normalise(aggregators, self.rule)
        return self


class CodecSpec(_Open):
    """The update codec by registry name; other keys are its parameters."""

    name: str = "identity"
    error_feedback: bool = True  # keep what the codec dropped and add it next round
    downstream: bool = False  # also broadcast the global model as deltas in this codec
    # (the server's error fed back: deai.compression.downstream)

    @model_validator(mode="after")
    def _check(self) -> CodecSpec:
        from deai.registry import codecs

        self._normalise(codecs, self.name)
        return self


class Accountant(StrEnum):
    RDP = "rdp"
    PRV = "prv"


class PrivacySpec(_Strict):
    """User-level DP-FedAvg (McMahan et al. 2018) with noise placed by the providers.

    Each drawn provider clips its update to ``clip`` and adds ``N(0, (z clip)^2 / m)``
    from its own secret randomness, ``m`` the number drawn, so the sum carries the central
    noise. With ``secure_aggregation`` validators see only that sum. Participants are a
    public draw, so no sampling amplification is claimed: each provider is charged, at
    the noise of the updates that arrived, for every round it contributed to.
    """

    clip: PositiveFloat = 1.0  # L2 bound on one provider's update: the sum's sensitivity
    noise_multiplier: NonNegativeFloat = 0.0  # z: std of the noise on the sum is z * clip
    epsilon: PositiveFloat | None = None  # the budget per provider; None: account, never stop
    delta: Annotated[Float, Field(gt=0, lt=1)] = 1e-5
    secure_aggregation: bool = False  # masked updates: validators learn only the sum
    threshold: Annotated[Float, Field(gt=0, le=1)] = 0.6  # share of the drawn providers a
    # round needs (SecAgg's t); fewer arrivals carry too little noise: no update, no charge
    accountant: Accountant = Accountant.RDP


class PayoutRule(StrEnum):
    CONTRIBUTION = "contribution"  # split by measured contribution (evaluator), >0 only
    WEIGHT = "weight"  # split by aggregation weight (capped example counts)
    EQUAL = "equal"  # equal shares among the kept updates


EVALUATIONS_PER_PLAYER = 5  # ContributionSpec's default budget per player and round


class ContributionSpec(_Strict):
    """How a round's budget is split among its providers (``deai.node.payouts``)."""

    payout: PayoutRule = PayoutRule.CONTRIBUTION
    evaluator: EvaluatorName = EvaluatorName.GTG  # for payout = contribution
    max_permutations: Annotated[PositiveInt, Field(le=100_000)] = 200  # Monte Carlo estimators
    # utility evaluations per round (tmc, gtg); None: EVALUATIONS_PER_PLAYER per player
    max_evaluations: Annotated[PositiveInt, Field(le=1_000_000)] | None = None

    def evaluations_for(self, players: int) -> int:
        """The evaluation budget of a round's game with ``players`` players: the spec's
        ``max_evaluations``, or ``EVALUATIONS_PER_PLAYER`` per player (50 at n = 10, where
        GTG tracks exact Shapley at 5 % of its cost; a fixed 50 at n = 26 bought one
        permutation after the singletons, and 9 of 20 honest providers of the demo had a
        value <= 0 in a round that gained)."""
        if self.max_evaluations is not None:
            return self.max_evaluations
        return EVALUATIONS_PER_PLAYER * players


class SettlementSpec(_Strict):
    """On-chain settlement: escrow, the validator committee, the chain windows."""

    budget_wei: Annotated[PositiveInt, Field(le=10**30)] = 10 * 10**18
    committee: Annotated[PositiveInt, Field(le=16)] = 3  # seats per round, drawn by stake
    # with replacement (a validator may hold several; Jobs.vy's MAX_COMMITTEE is 16)
    commit_period_s: Annotated[PositiveInt, Field(le=30 * 86_400)] = 3_600
    reveal_period_s: Annotated[PositiveInt, Field(le=30 * 86_400)] = 3_600
    claim_period_s: Annotated[PositiveInt, Field(le=365 * 86_400)] = 7 * 86_400

    @model_validator(mode="before")
    @classmethod
    def _eth(cls, data: Any) -> Any:
        """``budget_eth`` is accepted on input (TOML integers stop at 2^63 wei, about 9.2
        ETH) and stored as exact ``budget_wei`` (rounded to whole gwei)."""
        if isinstance(data, dict) and "budget_eth" in data:
            data = dict(data)
            eth = data.pop("budget_eth")
            if "budget_wei" in data:
                raise ValueError("give budget_eth or budget_wei, not both")
            if isinstance(eth, bool) or not isinstance(eth, int | float) or not eth > 0:
                raise ValueError(f"budget_eth must be a positive number, got {eth!r}")
            if not math.isfinite(eth) or eth > 1e12:
                raise ValueError(f"budget_eth must be finite and at most 1e12, got {eth!r}")
            data["budget_wei"] = round(eth * 1e9) * 10**9
        return data


class UpdatePolicy(_Strict):
    """What a validator accepts from a provider (``deai.node.validation``)."""

    max_norm: PositiveFloat = 1e3  # L2 norm above which an update is absurd and rejected
    max_examples: Annotated[PositiveInt, Field(le=10**9)] = 10_000  # claimed counts above
    # this are rejected; aggregation weights use counts only up to it


class Parties(_Strict):
    """Who takes part, in the order every party uses (seeds and shards follow it)."""

    requester: str = Field(min_length=1, max_length=128)
    providers: tuple[str, ...] = Field(min_length=1, max_length=MAX_PARTIES)
    validators: tuple[str, ...] = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _distinct(self) -> Parties:
        for name in ("providers", "validators"):
            ids = getattr(self, name)
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: every id must appear once")
        return self


# ------------------------------------------------------------------------------- the spec
class JobSpec(_Strict):
    """Everything that decides a job's result. See the module docstring."""

    name: str = Field(default="job", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    rounds: Annotated[PositiveInt, Field(le=MAX_ROUNDS)] = 10
    seed: Seed = 0  # public: model init, batch order, the participant draw
    round_timeout_s: Annotated[PositiveFloat, Field(le=30 * 86_400)] = 600.0
    data: DataSchema | None = None  # filled by simulate/submit from the data
    model: ModelSpec = ModelSpec()
    algorithm: AlgorithmSpec = AlgorithmSpec()
    aggregation: AggregationSpec = AggregationSpec()
    codec: CodecSpec = CodecSpec()
    privacy: PrivacySpec | None = None
    contribution: ContributionSpec = ContributionSpec()
    settlement: SettlementSpec | None = None  # None: no chain, nobody is paid
    policy: UpdatePolicy = UpdatePolicy()
    parties: Parties | None = None  # filled by simulate/submit
    nonce: str = Field(default="", max_length=64)  # the requester's, so re-submits differ

    @model_validator(mode="after")
    def _combinations(self) -> JobSpec:
        gossip = self.algorithm.gossip
        if gossip and self.privacy is not None:
            raise ValueError("privacy: DP-FedAvg needs a server algorithm, not dpsgd")
        if gossip and self.settlement is not None:
            raise ValueError("settlement: on-chain settlement needs a server algorithm, not dpsgd")
        if self.privacy is not None and self.aggregation.rule != "mean":
            raise ValueError(
                f"aggregation.rule: {self.aggregation.rule!r} with [privacy]: DP-FedAvg's "
                "accounting covers the clipped mean only; use rule = 'mean' (robust rules on "
                "noised updates are a mechanism the analysis does not cover)"
            )
        p = self.privacy
        if p is not None and p.epsilon is not None and p.noise_multiplier <= 0:
            raise ValueError(
                "privacy.noise_multiplier: 0 cannot meet a budget (privacy.epsilon is set): "
                "no round could run"
            )
        if p is not None and p.secure_aggregation:
            if self.codec.name != "identity":
                raise ValueError(
                    "codec: secure aggregation sums fixed-point vectors; use codec 'identity'"
                )
            if self.settlement is not None and self.contribution.payout is PayoutRule.CONTRIBUTION:
                raise ValueError(
                    "contribution.payout: 'contribution' needs individual updates, which secure "
                    "aggregation hides; use payout = 'equal'"
                )
        if self.parties is not None:
            self._check_parties(self.parties)
        return self

    def _check_parties(self, parties: Parties) -> None:
        n = len(parties.providers)
        if self.algorithm.gossip and n < 2:
            raise ValueError("dpsgd needs at least 2 providers")
        drawn = self.drawn_count()
        need = _min_rows(self.aggregation.rule, self.aggregation.params)
        if not self.algorithm.gossip and drawn < need:
            raise ValueError(
                f"aggregation.rule: {self.aggregation.rule!r} with f = "
                f"{self.aggregation.params.get('f', 0)} needs at least {need} updates per "
                f"round; {drawn} of {n} providers are drawn"
            )
        if self.privacy is not None and self.privacy.secure_aggregation and drawn < 2:
            raise ValueError(
                f"privacy.secure_aggregation: needs at least 2 drawn providers, got {drawn}"
            )

    # --------------------------------------------------------------------- derived
    def drawn_count(self) -> int:
        """Providers drawn per round (the same every round)."""
        n = len(self.providers)
        p = self.algorithm.participation
        return n if p >= 1.0 else max(1, math.ceil(p * n))

    def min_survivors(self) -> int:
        """Updates a DP round needs (``threshold`` of the drawn), at least 1."""
        if self.privacy is None:
            return 1
        return max(1, math.ceil(self.privacy.threshold * self.drawn_count()))

    @property
    def bound(self) -> bool:
        return self.parties is not None and self.data is not None

    def _parties(self) -> Parties:
        if self.parties is None:
            raise ConfigError("job spec has no parties yet (simulate or submit binds them)")
        return self.parties

    @property
    def providers(self) -> tuple[str, ...]:
        return self._parties().providers

    @property
    def validators(self) -> tuple[str, ...]:
        return self._parties().validators

    @property
    def requester(self) -> str:
        return self._parties().requester

    @property
    def data_schema(self) -> DataSchema:
        if self.data is None:
            raise ConfigError("job spec has no data schema yet (simulate or submit fills it)")
        return self.data

    # ----------------------------------------------------------------- addressing
    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        """Equal specs describe the same job: compare content, not cached values."""
        if not isinstance(other, JobSpec) or type(self) is not type(other):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = BaseModel.__hash__

    @cached_property
    def _hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def spec_hash(self) -> str:
        return self._hash

    @property
    def job_id(self) -> str:
        return f"{self.name}-{self._hash[:16]}"

    def to_json(self) -> str:
        return self.canonical_json()

    @staticmethod
    def from_json(text: str) -> JobSpec:
        """Parse a peer's spec; any problem is an ``InvalidMessage``."""
        from deai.errors import InvalidMessage

        try:
            return JobSpec.model_validate_json(text)
        except (ValueError, ConfigError) as e:
            raise InvalidMessage(f"job spec does not parse: {str(e)[:300]}") from None

    def bind(
        self,
        *,
        data: DataSchema | None = None,
        parties: Parties | None = None,
        nonce: str | None = None,
    ) -> JobSpec:
        """A copy with the data schema, parties and nonce filled in (validated again)."""
        d = self.model_dump(mode="json")
        if data is not None:
            d["data"] = data.model_dump(mode="json")
        if parties is not None:
            d["parties"] = parties.model_dump(mode="json")
        if nonce is not None:
            d["nonce"] = nonce
        from deai.job.errors import validate

        return validate(JobSpec, d, "job", "job spec")


def _min_rows(rule: str, params: dict[str, Any]) -> int:
    from deai.aggregation.plugin import min_rows

    return min_rows(rule, params)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any *public* parts, stable across processes and platforms.
    Never use it for a secret: secrets come from the node context's ``secret_bytes``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
