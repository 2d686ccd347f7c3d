"""One entry point per attack level, so the runtime never branches on attack names.

A malicious node carries an :class:`AttackSpec`. Before local training the runtime asks
:func:`data_attack` for a transform of the node's ``(x, y)`` (``None``: train on clean data);
after training it passes the node's update to :func:`apply_update_attack`, which returns the
rows the node submits: ``spec.identities`` rows (one per Sybil identity it controls), each a
copy of the attack's row plus ``spec.jitter`` Gaussian noise. So "10 Sybil clones of a
label-flipping attacker" is ``AttackSpec(AttackName.LABEL_FLIP, identities=10)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import torch
from torch import Tensor

from deai.attacks import byzantine, freeride
from deai.attacks.byzantine import AttackError, Perturbation, SumBound
from deai.attacks.data import (
    Corner,
    TriggerSpec,
    boost,
    flip_labels,
    poison_dataset,
    replacement_factor,
)
from deai.attacks.sybil import clones
from deai.errors import ConfigError

DataTransform = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


class AttackName(StrEnum):
    NONE = "none"  # honest behaviour (useful with identities > 1: reward-farming Sybils)
    LABEL_FLIP = "label_flip"  # data: y -> C - 1 - y
    BACKDOOR = "backdoor"  # data: pixel trigger -> target; update: model-replacement boost
    SIGN_FLIP = "sign_flip"  # update: -scale * own update
    GAUSSIAN = "gaussian"  # update: N(0, sigma^2 I)
    ALIE = "alie"  # update: mu - z sigma (omniscient)
    IPM = "ipm"  # update: -eps * mu (omniscient)
    MIN_MAX = "min_max"  # update: mu + gamma p (omniscient)
    MIN_SUM = "min_sum"  # update: mu + gamma p (omniscient)
    ADAPTIVE = "adaptive"  # update: mu + gamma p, gamma optimised against the job's own rule
    FREE_RIDER_ZERO = "free_rider_zero"  # update: zeros
    FREE_RIDER_STALE = "free_rider_stale"  # update: previous global change
    FREE_RIDER_NOISE = "free_rider_noise"  # update: zero or stale base + small noise


_DEFAULTS: dict[AttackName, dict[str, float | str]] = {
    AttackName.NONE: {},
    AttackName.LABEL_FLIP: {"num_classes": 10},
    AttackName.BACKDOOR: {
        "target": 0,  # label of triggered examples
        "size": 2,  # trigger side in pixels
        "value": 1.0,  # trigger pixel value
        "corner": Corner.BOTTOM_RIGHT.value,
        "fraction": 0.5,  # share of the attacker's examples that get the trigger
    },
    AttackName.SIGN_FLIP: {"scale": 1.0},
    AttackName.GAUSSIAN: {"sigma": 1.0},
    AttackName.ALIE: {},
    AttackName.IPM: {"eps": 0.1},
    AttackName.MIN_MAX: {"perturbation": Perturbation.STD.value, "gamma_init": 10.0, "tol": 1e-5},
    AttackName.MIN_SUM: {
        "perturbation": Perturbation.STD.value,
        "gamma_init": 10.0,
        "tol": 1e-5,
        "bound": SumBound.LARGEST.value,
    },
    AttackName.ADAPTIVE: {"perturbation": Perturbation.UNIT_VECTOR.value},
    AttackName.FREE_RIDER_ZERO: {},
    AttackName.FREE_RIDER_STALE: {},
    AttackName.FREE_RIDER_NOISE: {"sigma": 1e-3, "base": "zero"},  # base: "zero" | "stale"
}
# Numeric parameters without a default: absent means "derive it" (documented per attack).
_OPTIONAL: dict[AttackName, frozenset[str]] = {
    AttackName.ALIE: frozenset({"z"}),  # absent: the paper's z_max(n, f)
    AttackName.BACKDOOR: frozenset({"boost"}),  # absent: n_total / n_malicious
}
_CHOICES: dict[str, frozenset[str]] = {
    "corner": frozenset(c.value for c in Corner),
    "perturbation": frozenset(p.value for p in Perturbation),
    "base": frozenset({"zero", "stale"}),
    "bound": frozenset(b.value for b in SumBound),
}


@dataclass(frozen=True)
class AttackSpec:
    """What a malicious node does. ``params`` override the per-attack defaults above; an
    unknown key or a value of the wrong kind is a :class:`ConfigError`."""

    name: AttackName
    params: Mapping[str, float | str] = field(default_factory=dict)
    identities: int = 1  # Sybil identities this attacker submits from
    jitter: float = 0.0  # std of the Gaussian noise added to each identity's copy

    def __post_init__(self) -> None:
        try:
            name = AttackName(self.name)
        except ValueError:
            allowed = ", ".join(a.value for a in AttackName)
            raise ConfigError(f"unknown attack {self.name!r}; allowed: {allowed}") from None
        object.__setattr__(self, "name", name)
        if self.identities < 1 or not self.jitter >= 0.0:
            raise ConfigError(
                f"need identities >= 1 and jitter >= 0; got {self.identities}, {self.jitter}"
            )
        defaults = _DEFAULTS[name]
        optional = _OPTIONAL.get(name, frozenset())
        for key, value in self.params.items():
            if key not in defaults and key not in optional:
                known = sorted({*defaults, *optional})
                raise ConfigError(f"attack {name.value} has no parameter {key!r}; known: {known}")
            wants_text = key in _CHOICES
            if wants_text and value not in _CHOICES[key]:
                raise ConfigError(
                    f"{name.value}.{key} must be one of {sorted(_CHOICES[key])}, got {value!r}"
                )
            if not wants_text and (
                isinstance(value, str | bool) or not isinstance(value, int | float)
            ):
                raise ConfigError(f"{name.value}.{key} must be a number, got {value!r}")
        object.__setattr__(self, "params", MappingProxyType({**defaults, **self.params}))

    def num(self, key: str) -> float:
        """A numeric parameter (default applied)."""
        return float(self.params[key])

    def text(self, key: str) -> str:
        return str(self.params[key])

    def has(self, key: str) -> bool:
        return key in self.params


def data_attack(spec: AttackSpec) -> DataTransform | None:
    """The data poisoning of ``spec`` as ``(x, y, gen) -> (x', y')``, or ``None`` when the
    attack does not touch data. Transforms return copies."""
    match spec.name:
        case AttackName.LABEL_FLIP:
            classes = int(spec.num("num_classes"))

            def flip(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
                return x.clone(), flip_labels(y, classes)

            return flip
        case AttackName.BACKDOOR:
            trigger = TriggerSpec(
                target=int(spec.num("target")),
                size=int(spec.num("size")),
                value=spec.num("value"),
                corner=Corner(spec.text("corner")),
            )
            fraction = spec.num("fraction")

            def poison(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
                return poison_dataset(x, y, trigger, fraction, gen)

            return poison
        case _:
            return None


def _attack_row(
    spec: AttackSpec,
    own: Tensor,
    honest: Tensor,
    n_total: int,
    n_malicious: int,
    gen: torch.Generator,
    prev: Tensor,
    server_lr: float = 1.0,
    aggregate: byzantine.AggregateRows | None = None,
) -> Tensor:
    """The single row ``[d]`` the attack sends (before Sybil cloning)."""
    match spec.name:
        case AttackName.NONE | AttackName.LABEL_FLIP:
            return own.clone()
        case AttackName.BACKDOOR:
            factor = (
                spec.num("boost")
                if spec.has("boost")
                else replacement_factor(n_total, n_malicious, server_lr)
            )
            return boost(own, factor)
        case AttackName.SIGN_FLIP:
            return byzantine.sign_flip(own, 1, spec.num("scale"))[0]
        case AttackName.GAUSSIAN:
            return byzantine.gaussian(own.shape[0], 1, spec.num("sigma"), gen, own.dtype)[0]
        case AttackName.ALIE:
            z = spec.num("z") if spec.has("z") else None
            return byzantine.alie(honest, n_total, n_malicious, z)[0]
        case AttackName.IPM:
            return byzantine.ipm(honest, spec.num("eps"))[0]
        case AttackName.MIN_MAX:
            p = Perturbation(spec.text("perturbation"))
            return byzantine.min_max(honest, 1, p, spec.num("gamma_init"), spec.num("tol"))[0]
        case AttackName.MIN_SUM:
            p, b = Perturbation(spec.text("perturbation")), SumBound(spec.text("bound"))
            return byzantine.min_sum(honest, 1, p, spec.num("gamma_init"), spec.num("tol"), b)[0]
        case AttackName.ADAPTIVE:
            if aggregate is None:
                raise AttackError("the adaptive attack needs the defence it adapts to")
            p = Perturbation(spec.text("perturbation"))
            k = max(n_malicious, 1)
            return byzantine.adaptive(honest, k, aggregate, p)[0]
        case AttackName.FREE_RIDER_ZERO:
            return freeride.zero(own.shape[0], 1, own.dtype)[0]
        case AttackName.FREE_RIDER_STALE:
            return freeride.stale(prev)[0]
        case AttackName.FREE_RIDER_NOISE:
            base = prev if spec.text("base") == "stale" else torch.zeros_like(own)
            return freeride.noise(base, spec.num("sigma"), gen)[0]
    raise AssertionError(f"unhandled attack {spec.name}")  # pragma: no cover


def apply_update_attack(
    spec: AttackSpec,
    own_update: Tensor,
    honest_updates: Tensor,
    n_total: int,
    n_malicious: int,
    gen: torch.Generator,
    prev_global_delta: Tensor | None = None,
    server_lr: float = 1.0,
    aggregate: byzantine.AggregateRows | None = None,
) -> Tensor:
    """The rows ``[spec.identities, d]`` a malicious node submits this round.

    ``own_update [d]``: what the node computed on its (possibly poisoned) data.
    ``honest_updates [m, d]``: the honest updates the attacker is assumed to know (may be
    ``[0, d]`` for attacks that need none). ``n_total``: rows the aggregator will see;
    ``n_malicious``: of which malicious (all Sybil identities counted). ``prev_global_delta``:
    the last change of the global model (``None`` in the first round: taken as zero).
    ``server_lr``: the server's step on the aggregate (the backdoor boost divides by it).
    ``aggregate``: the job's aggregation rule as ``rows -> [d]`` (the adaptive attack runs it).
    """
    if own_update.ndim != 1:
        raise AttackError(f"own_update must be [d], got {tuple(own_update.shape)}")
    d = own_update.shape[0]
    if honest_updates.ndim != 2 or honest_updates.shape[1] != d:
        raise AttackError(f"honest_updates must be [m, {d}], got {tuple(honest_updates.shape)}")
    if not 1 <= n_malicious <= n_total:
        raise ConfigError(f"need 1 <= n_malicious <= n_total; got {n_malicious}, {n_total}")
    prev = torch.zeros_like(own_update) if prev_global_delta is None else prev_global_delta
    if prev.shape != (d,):
        raise AttackError(f"prev_global_delta must be [{d}], got {tuple(prev.shape)}")
    row = _attack_row(
        spec, own_update, honest_updates, n_total, n_malicious, gen, prev, server_lr, aggregate
    )
    return clones(row.to(own_update.dtype), spec.identities, spec.jitter, gen)
