"""The job specification every party of a job agrees on, addressed by its hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from deai.errors import InvalidMessage
from deai.learning.algorithms import AlgorithmName, AlgorithmSpec, Weighting
from deai.learning.models import ModelConfig, ModelName
from deai.learning.topology import TopologyName
from deai.learning.train import LocalTrainConfig


@dataclass(frozen=True)
class UpdatePolicy:
    """What a validator accepts from a provider (see ``deai.node.validation``)."""

    max_norm: float = 1e3  # L2 norm above which an update is absurd and rejected
    max_examples: int = 10_000  # claimed example counts above this are rejected


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    rounds: int
    seed: int
    algorithm: AlgorithmSpec
    model: ModelConfig
    input_shape: tuple[int, ...]
    num_classes: int
    requester: str
    providers: tuple[str, ...]
    validators: tuple[str, ...]
    round_timeout_s: float = 600.0  # simulated seconds a round may wait for stragglers
    policy: UpdatePolicy = field(default_factory=UpdatePolicy)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @staticmethod
    def from_json(text: str) -> JobSpec:
        try:
            d = json.loads(text)
            alg = d["algorithm"]
            return JobSpec(
                job_id=str(d["job_id"]),
                rounds=int(d["rounds"]),
                seed=int(d["seed"]),
                algorithm=AlgorithmSpec(
                    name=AlgorithmName(alg["name"]),
                    local=LocalTrainConfig(**alg["local"]),
                    server_lr=float(alg["server_lr"]),
                    weighting=Weighting(alg["weighting"]),
                    topology=TopologyName(alg["topology"]),
                    participation=float(alg["participation"]),
                ),
                model=ModelConfig(
                    name=ModelName(d["model"]["name"]),
                    hidden=tuple(d["model"]["hidden"]),
                    channels=tuple(d["model"]["channels"]),
                ),
                input_shape=tuple(d["input_shape"]),
                num_classes=int(d["num_classes"]),
                requester=str(d["requester"]),
                providers=tuple(d["providers"]),
                validators=tuple(d["validators"]),
                round_timeout_s=float(d["round_timeout_s"]),
                policy=UpdatePolicy(**d["policy"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidMessage(f"job spec does not parse: {e}") from e


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
