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
class PrivacySpec:
    """User-level DP-FedAvg (McMahan et al. 2018) with noise placed by the providers.

    Each provider clips its update to ``clip`` and adds ``N(0, (z * clip)^2 / m)`` where
    ``m`` is the number of providers drawn for the round, so the sum carries the central
    noise without trusting any validator (``NoisePlacement.DISTRIBUTED`` in
    ``deai.privacy.dp_fedavg``). With ``secure_aggregation`` the validators see only that
    sum. Validators account every round with Opacus (RDP) at the *effective* noise of the
    updates that actually arrived, and pre-check each round at the worst case the round
    may close with, so the budget is never exceeded.
    """

    clip: float = 1.0  # L2 bound on one provider's update: the sensitivity of the sum
    noise_multiplier: float = 0.0  # z: std of the noise on the sum is z * clip
    epsilon: float | None = None  # the job's budget; None: account but never stop
    delta: float = 1e-5
    secure_aggregation: bool = False  # masked updates: validators learn only the sum
    min_survivors: int = 1  # fewer updates than this: the round applies no update (their
    # noise shares would not add up to the promised noise), and nothing is charged


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
    privacy: PrivacySpec | None = None

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
                privacy=PrivacySpec(**d["privacy"]) if d.get("privacy") else None,
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidMessage(f"job spec does not parse: {e}") from e


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
