"""DP-FedAvg in a job: the provider's noise, the validator's checks, the accounting.

The mechanism (McMahan et al. 2018, user level, distributed noise): each of the ``m``
providers drawn for a round clips its update to ``clip`` and adds
``N(0, (z clip)^2 / m)`` drawn from *its own secret randomness*
(``NodeContext.secret_bytes``, never the spec); the validator divides the sum by ``m``.
When ``a`` of the ``m`` arrive, the sum carries noise multiplier ``z sqrt(a / m)``; a round
with fewer than ``threshold * m`` arrivals applies no update and charges nothing.

Accounting that matches the mechanism (issue: the draw is public, so there is no
amplification by sampling): each provider is charged, with Opacus, one Gaussian
mechanism at ``q = 1`` for every round its update is in, at that round's effective noise.
Two losses are reported per provider:

* **against the public model** (anyone who sees the released parameters): the noise on
  the sum;
* **against the aggregator** (the validators): with secure aggregation the validators see
  only the sum, so the same figure (given fewer than the SecAgg threshold of colluding
  providers); without it every validator sees each update with only its ``1/m`` share of
  the noise, i.e. noise multiplier ``z / sqrt(m)`` per update.

The job's budget bounds the public-model epsilon of every provider: the public draw caps
how often one provider is drawn (:func:`deai.node.base.participation_cap`), at the weakest
noise a round may close with, so no provider's epsilon can pass the budget whatever drops
out.

Validators do not clip noised updates again (that would scale signal and noise by an
amount the analysis does not cover): a plaintext update whose norm exceeds what a clipped
update plus its noise share can reach (:func:`dp_norm_bound`) is rejected instead.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.job.spec import JobSpec
from deai.node.hooks import ProviderPrivacy, RoundPrivacy
from deai.node.strategy import (
    RoundResult,
    SecureSum,
    ServerStrategy,
    Strategy,
    Updates,
)
from deai.privacy.accounting import AccountantKind, PrivacyAccountant
from deai.privacy.dp_fedavg import clip_update, gaussian_noise

NORM_SIGMAS = 8.0  # a noised update's norm exceeds clip + sigma (sqrt(d) + 8) w.p. < e^-32


def _kind(spec: JobSpec) -> AccountantKind:
    assert spec.privacy is not None
    return AccountantKind.PRV if spec.privacy.accountant.value == "prv" else AccountantKind.RDP


@lru_cache(maxsize=4096)
def gaussian_epsilon(noise_multiplier: float, count: int, delta: float) -> float:
    """Epsilon of ``count`` compositions of the Gaussian mechanism at ``q = 1`` (RDP)."""
    if count <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = PrivacyAccountant(AccountantKind.RDP)
    acc.step(noise_multiplier, 1.0, count)
    return acc.epsilon(delta)


def noise_std(spec: JobSpec, drawn: int) -> float:
    """Std of one provider's noise share when ``drawn`` providers are drawn."""
    p = spec.privacy
    assert p is not None
    return p.noise_multiplier * p.clip / math.sqrt(max(drawn, 1))


def privatize(spec: JobSpec, delta: Tensor, drawn: int, generator: torch.Generator) -> Tensor:
    """Clip to the sensitivity and add this provider's share of the noise. ``generator``
    must be seeded from the node's secret randomness."""
    p = spec.privacy
    assert p is not None
    out = clip_update(delta, p.clip).vector
    if p.noise_multiplier > 0:
        out = out + gaussian_noise(out.shape[0], noise_std(spec, drawn), generator)
    return out


def dp_norm_bound(spec: JobSpec, drawn: int, dim: int) -> float:
    """The largest norm an honest noised update reaches (except with negligible
    probability): ``clip + sigma (sqrt(d) + 8)``."""
    p = spec.privacy
    assert p is not None
    bound = p.clip + noise_std(spec, drawn) * (math.sqrt(dim) + NORM_SIGMAS)
    return bound * (1 + 1e-5)  # float32 rounding of a vector clipped to exactly ``clip``


class _Ledger:
    """Per-provider Opacus accountants: against the public model and the aggregator."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.public: dict[str, PrivacyAccountant] = {}
        self.aggregator: dict[str, PrivacyAccountant] = {}
        self.rounds: dict[str, int] = {}

    def charge(self, provider: str, z_sum: float, z_update: float) -> None:
        kind = _kind(self.spec)
        self.public.setdefault(provider, PrivacyAccountant(kind)).step(z_sum, 1.0)
        if z_update > 0:
            self.aggregator.setdefault(provider, PrivacyAccountant(kind)).step(z_update, 1.0)
        self.rounds[provider] = self.rounds.get(provider, 0) + 1

    def report(self, delta: float, secure: bool) -> dict[str, ProviderPrivacy]:
        out = {}
        for prov, acc in self.public.items():
            pub = acc.epsilon(delta)
            if secure:
                agg = pub
            else:
                a = self.aggregator.get(prov)
                agg = a.epsilon(delta) if a is not None else math.inf
            out[prov] = ProviderPrivacy(self.rounds[prov], pub, agg)
        return out


class DPStrategy(Strategy):
    """DP-FedAvg around a :class:`ServerStrategy`: fixed denominator ``m`` (the drawn
    count), no update below ``threshold * m`` arrivals, per-provider accounting."""

    def __init__(self, spec: JobSpec, inner: ServerStrategy) -> None:
        super().__init__(spec)
        if spec.privacy is None:
            raise ConfigError("DPStrategy needs a job with [privacy]")
        self.inner = inner
        self.ledger = _Ledger(spec)

    def aggregate_train(
        self, round_: int, params: Tensor, inputs: Updates | SecureSum
    ) -> RoundResult:
        p = self.spec.privacy
        assert p is not None
        drawn = self.configure_train(round_)
        m = len(drawn)
        if isinstance(inputs, SecureSum):
            senders, total = inputs.contributors, inputs.total
        else:
            senders = inputs.senders
            total = inputs.stack.sum(dim=0) if senders else torch.zeros_like(params)
        need = max(1, math.ceil(p.threshold * m))
        secure = p.secure_aggregation
        if len(senders) < need or m == 0:
            note = (
                f"{len(senders)} of {m} drawn updates arrived, fewer than the {need} whose "
                "noise shares add up to the promised noise: no update, nothing charged"
            )
            return RoundResult(params, False, (), note=note, privacy=self._report(0.0, secure))
        z_sum = p.noise_multiplier * math.sqrt(len(senders) / m)
        z_update = p.noise_multiplier / math.sqrt(m)
        if p.noise_multiplier > 0:
            for s in senders:
                self.ledger.charge(s, z_sum, z_update)
        new = self.inner.step(params, total / m)
        weights = tuple(1.0 for _ in senders) if isinstance(inputs, Updates) else ()
        return RoundResult(new, True, senders, weights=weights, privacy=self._report(z_sum, secure))

    def _report(self, z_sum: float, secure: bool) -> RoundPrivacy:
        p = self.spec.privacy
        assert p is not None
        per = self.ledger.report(p.delta, secure)
        pub = max((v.epsilon_public for v in per.values()), default=0.0)
        agg = max((v.epsilon_aggregator for v in per.values()), default=0.0)
        return RoundPrivacy(z_sum, pub, agg, per)

    def stop_reason(self, round_: int) -> str | None:
        p = self.spec.privacy
        assert p is not None
        if p.epsilon is None or self.configure_train(round_):
            return None
        return (
            f"privacy budget: no provider may contribute to round {round_} without its "
            f"epsilon possibly passing {p.epsilon} (delta={p.delta}); training stopped and "
            "the current model was delivered"
        )
