"""Seams where the other planes plug into the roles, with honest defaults.

* :class:`Behaviour` is the adversary hook of a provider (attacks, free-riding); the
  default is honest.
* :class:`Settlement` is what a validator does with a finished round (the ledger plugs in
  here); the default settles nothing.
* :class:`RoundObserver` receives measurements for reports. It is not part of the protocol
  and costs no bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from torch import Tensor


@dataclass(frozen=True)
class Rejection:
    round: int
    sender: str
    reason: str  # a RejectReason value
    detail: str


@dataclass(frozen=True)
class ProviderPrivacy:
    """One provider's privacy loss so far (DP jobs)."""

    rounds: int  # rounds it contributed to
    epsilon_public: float  # against anyone who sees the released models
    epsilon_aggregator: float  # against the validators who aggregate (inf: unbounded)


@dataclass(frozen=True)
class RoundPrivacy:
    """What a DP round cost, and the whole job's loss so far."""

    noise_multiplier: float  # the effective noise multiplier of this round's sum
    epsilon_public_max: float  # worst provider, against the public model
    epsilon_aggregator_max: float  # worst provider, against the aggregator
    per_provider: dict[str, ProviderPrivacy] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundOutcome:
    job_id: str
    round: int
    validator: str
    params: Tensor | None  # [d] global parameters after this round (None once stored
    # lean: see :func:`lean`; the model_hash stays)
    model_hash: str  # sha256 of the canonical parameter bytes
    participants: tuple[str, ...]  # providers asked to train this round
    accepted: tuple[str, ...]  # updates that passed validation
    excluded: tuple[str, ...]  # accepted updates the aggregator left out
    rejections: tuple[Rejection, ...]
    missing: tuple[str, ...]  # participants with no update by the deadline
    weights: tuple[float, ...]  # aggregation weight of each accepted update
    updates: Tensor | None  # [len(accepted), d] the accepted updates (for evaluators)
    started_s: float
    closed_s: float
    start_params: Tensor | None = None  # [d] global parameters the round started from
    applied: bool = True  # False: the model is unchanged this round (see ``note``)
    note: str = ""  # why no update was applied, or what the rule did of note
    privacy: RoundPrivacy | None = None  # DP jobs: this round's noise and the loss so far
    secure: bool = False  # only the secure sum was seen (``updates`` is None)
    abstain: bool = False  # the validator missed inputs (a restart): it must not commit

    @property
    def epsilon(self) -> float | None:
        """The worst provider's epsilon against the public model so far (DP jobs)."""
        return None if self.privacy is None else self.privacy.epsilon_public_max

    def require_params(self) -> Tensor:
        """The round's parameters; an error for a stored lean outcome (:func:`lean`)."""
        if self.params is None:
            raise ValueError(
                f"round {self.round} of {self.job_id}: a lean outcome keeps no parameters "
                "(only the live outcome or keep_updates does)"
            )
        return self.params


def lean(outcome: RoundOutcome) -> RoundOutcome:
    """``outcome`` without its tensors (the update stack, the parameters before and after
    the round; ``model_hash`` names the model): what a role keeps once the round's
    settlement and observers have read it. Keeping the two parameter vectors made a
    400-round job of a 12M-parameter model hold 39 GB and die (the DiLoCo benchmark's data
    parallel baseline)."""
    return replace(outcome, updates=None, params=None, start_params=None)


class Behaviour(Protocol):
    """How a provider treats its data and its update. Honest: unchanged."""

    def local_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]: ...

    def update(self, delta: Tensor, round_: int) -> Tensor: ...

    def claim(self, num_examples: int) -> int:
        """The example count the provider reports (validators cap and check it)."""
        ...


class Honest:
    def local_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def update(self, delta: Tensor, round_: int) -> Tensor:
        return delta

    def claim(self, num_examples: int) -> int:
        return num_examples


class Settlement(Protocol):
    def settle(self, outcome: RoundOutcome) -> None: ...


class NoSettlement:
    """Settles nothing: for runs without a ledger."""

    def settle(self, outcome: RoundOutcome) -> None:
        return None


class RoundObserver(Protocol):
    def on_round(self, outcome: RoundOutcome) -> None: ...

    def on_gossip(self, node_id: str, round_: int, params: Tensor, time_s: float) -> None: ...

    def on_rejection(self, node_id: str, rejection: Rejection) -> None: ...


class NullObserver:
    def on_round(self, outcome: RoundOutcome) -> None:
        return None

    def on_gossip(self, node_id: str, round_: int, params: Tensor, time_s: float) -> None:
        return None

    def on_rejection(self, node_id: str, rejection: Rejection) -> None:
        return None


class SecureUploader(Protocol):
    """Where a provider hands its (clipped, noised) update when the job uses secure
    aggregation, instead of sending it in the clear."""

    def submit(self, job_id: str, round_: int, delta: Tensor, num_examples: int) -> None: ...
