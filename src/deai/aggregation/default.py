"""The recommended default defence: a composition of the rules in this package.

1. **Norm bounding** (Sun et al. 2019): every row is clipped to ``norm_multiplier`` times the
   median row norm. Boosted model-replacement updates (Bagdasaryan et al. 2020), scaled
   sign flips and large Gaussian noise lose their size advantage.
2. **Sybil damping** (FoolsGold's history similarity, Fung et al. 2020): per sender id we
   keep the sum of past updates; a row whose pardoned cosine similarity ``s`` to some other
   history exceeds ``sybil_threshold`` gets weight ``(1 - s) / (1 - sybil_threshold)``
   (clipped to ``[0, 1]``), so near-clones share what one honest client would get, and exact
   clones get nothing. A linear ramp instead of FoolsGold's logit: honest non-IID clients
   below the threshold keep their full weight, which the logit does not guarantee.
3. **Nearest-neighbour mixing** (``mixing = nnm``, Allouah et al., AISTATS 2023): each row
   becomes the mean of its ``n - f`` nearest rows (``f = mixing_fraction n``, by default
   ``trim_fraction n``), which shrinks the spread of honest non-IID rows before the robust
   centre looks at them. Chosen by measurement (docs/robustness.md); on digits with 50
   providers, seed 0, NNM cut the no-attack cost against FedAvg at Dirichlet alpha = 0.1
   from 10.6 (trimmed mean alone) to 7.2 points; bucketing (s = 2) + centered clipping +
   worker momentum 0.9 and NNM + centered clipping did no better at alpha = 0.05. The
   neighbourhood means are weighted by the (capped) claims (``mixing_weighted``; the
   paper's are unweighted): unweighted mixing gives a provider with 5 examples the voice of
   one with 100 in every neighbourhood, which cost 7.8 points at alpha = 0.05 (0.660 ->
   0.738, FedAvg 0.808). The price of mixing: an attacker is averaged into its neighbours'
   rows, so a backdoor held by 20% of the rows survives the trimming that stops it without mixing.
4. **Robust centre**: by default the weighted coordinate-wise trimmed mean (Yin et al. 2018)
   trimming ``trim_fraction`` of the weight per side and coordinate. It removes attacks that
   live in a few coordinates; ``CENTERED_CLIPPING`` (Karimireddy et al. 2021) from the
   weighted median, the plain ``MEAN`` and the ``BANDED_MEAN`` (mean clamped to the trimmed
   band) are alternatives; ``sign_gate`` zeroes coordinates few rows agree on (Ozdayi et
   al. 2021's robust learning rate).
5. **Opposed rows** (``drop_opposed``): rows whose cosine to the centre is ``<= 0`` are
   dropped and the centre recomputed; sign flipping and IPM rows point away from it.
6. **Spectral exclusion** (``spectral``, opt-in; off by default): Divide and Conquer
   (Shejwalkar & Houmansadr, NDSS 2021) in stages, once per round before the mixing. Each
   stage ``(fraction, scale)`` centres the live rows on their weighted coordinate median,
   optionally divides each coordinate by ``max(MAD_j, scale * median_j MAD_j)`` (so
   coordinates honest rows barely move, like a trigger's pixels, count), and excludes the
   ``fraction`` of the rows live before the first stage with the largest squared
   projections on the top principal direction; the opposed-row recomputation keeps them
   out. ``((0.1, None), (0.1, 0.1))`` stops the benchmark's backdoor at alpha = 0.5 and
   <= 20 % attackers, not at alpha = 0.1, IID or 30-40 %, and excludes that share of honest
   rows every round (``benchmarks/results/robustness_spectral.json``; docs/robustness.md).
   An attacker that spreads its push over several principal directions, or hides it in the
   honest rows' spread, is not caught.

7. **The backdoor sentinel** (``sentinel``; validator side, not in this class): the job's
   :class:`~deai.node.strategy.ServerStrategy` runs :class:`~deai.aggregation.sentinel.
   BackdoorSentinel` around this rule on image classification: a Neural Cleanse trigger
   scan of the start model on the requester's validation data, and once a class is
   reached by an anomalously small trigger, the senders whose own models learn it get
   weight 0 and each new model is unlearned. ``None`` (the default) runs it where it can,
   ``True`` requires it (a job it cannot run on is refused), ``False`` turns it off. It
   takes the benchmark's backdoor from 98-100 % to the figures in
   ``benchmarks/results/robustness.json`` (docs/robustness.md).

Claimed example counts weight the rows (``use_weights``), each capped at ``weight_cap``
times the median claim: the trim is a share of weight, and an uncapped row claiming a huge
count would escape it. ``worker_momentum`` (Karimireddy, He, Jaggi, ICML 2021) keeps a
per-sender momentum of the clipped rows; off by default (not measured to help here).
Threat model: Byzantine (Sybil-damped, capped) weight below ``trim_fraction`` per
coordinate; Sybil groups of any size whose update histories stay alike. The Sybil step needs
``ctx.senders`` (a missing list is an error unless ``sybil_threshold`` is ``None``). Rows
whose final weight is zero are ``excluded``. Cost ``O(n^2 d)`` (similarities, mixing) +
``O(n d log n)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor

from deai.aggregation._common import as64, normalized_weights, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.aggregation.centered_clipping import clip_iterate
from deai.aggregation.foolsgold import SimilarityHistory, pardoned_similarity
from deai.aggregation.median import weighted_coordinate_median
from deai.aggregation.mixing import bucketing, nearest_neighbour_mixing
from deai.aggregation.norm_bounding import clip_norms, median_norm
from deai.aggregation.trimmed_mean import weighted_band, weighted_trimmed_mean
from deai.errors import AggregationError, ConfigError


class Mixing(StrEnum):
    NONE = "none"  # the robust centre sees the rows as sent (after clipping)
    NNM = "nnm"  # nearest-neighbour mixing (Allouah et al., AISTATS 2023)
    BUCKETING = "bucketing"  # public-seed buckets of `bucket_size` rows (Karimireddy et al. 2022)


class CenterRule(StrEnum):
    TRIMMED_MEAN = "trimmed_mean"  # weighted coordinate-wise trimmed mean
    CENTERED_CLIPPING = "centered_clipping"  # centered clipping from the weighted median
    MEAN = "mean"  # the weighted mean of the (clipped, mixed) rows
    BANDED_MEAN = "banded_mean"  # that mean clamped per coordinate to the trimmed band of
    # the unmixed rows: each coordinate inside the range the middle weight spans


@dataclass(frozen=True)
class DefaultConfig:
    norm_multiplier: float = 1.0  # clip rows to this multiple of the median row norm
    sybil_threshold: float | None = 0.9  # history cosine above which weight ramps to 0; None: off
    center: CenterRule = CenterRule.TRIMMED_MEAN  # the robust centre
    trim_fraction: float = 0.2  # weight share trimmed per side and coordinate (trimmed mean)
    drop_opposed: bool = True  # drop rows pointing away from the robust centre (cosine <= 0)
    use_weights: bool = True  # multiply in the given weights (claimed example counts), each
    # capped at `weight_cap` times the median weight so an inflated claim buys little
    weight_cap: float = 2.0
    tau_multiplier: float = 1.0  # CC radius in units of the median distance to the start
    iterations: int = 3  # CC iterations
    mixing: Mixing = Mixing.NNM  # pre-aggregation mixing before the robust centre
    mixing_fraction: float | None = None  # NNM's f as a share of the rows; None: trim_fraction
    mixing_weighted: bool = True  # NNM: weight each neighbourhood's mean by the rows' weights
    bucket_size: int = 2  # bucketing: rows per bucket
    sign_gate: float | None = None  # zero coordinates with weighted sign agreement below this
    worker_momentum: float = 0.0  # per-sender momentum of the (clipped) rows; 0: off
    min_norm_fraction: float = 0.1  # rows below this share of the median norm carry no
    # signal (free-riders sending zero or noise-only updates): weight 0, so they neither
    # dilute the centre nor earn a share of it
    spectral: tuple[tuple[float, float | None], ...] = ()  # DnC stages (fraction, scale):
    # each excludes that share of the live rows with the largest projections on the top
    # principal direction of the rows left, the coordinates divided by max(MAD_j, scale x
    # the median MAD) first (scale None: unscaled); (): off
    sentinel: bool | None = None  # the validator's backdoor sentinel (trigger scan and
    # unlearning on the requester's validation data, deai.aggregation.sentinel); None: on
    # where it can run (image classification, plain server strategy), True: required

    def __post_init__(self) -> None:
        try:  # a spec's JSON dump hands the centre over as a plain string
            object.__setattr__(self, "center", CenterRule(self.center))
        except ValueError:
            allowed = ", ".join(c.value for c in CenterRule)
            raise ConfigError(f"center must be one of {allowed}, got {self.center!r}") from None
        if not self.norm_multiplier > 0.0:
            raise ConfigError(f"norm_multiplier must be > 0, got {self.norm_multiplier}")
        if self.sybil_threshold is not None and not -1.0 <= self.sybil_threshold < 1.0:
            raise ConfigError(
                f"sybil_threshold must be in [-1, 1) or None, got {self.sybil_threshold}"
            )
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ConfigError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if not self.weight_cap >= 1.0:
            raise ConfigError(f"weight_cap must be >= 1, got {self.weight_cap}")
        if not self.tau_multiplier > 0.0:
            raise ConfigError(f"tau_multiplier must be > 0, got {self.tau_multiplier}")
        if not 0.0 <= self.min_norm_fraction < 1.0:
            raise ConfigError(f"min_norm_fraction must be in [0, 1), got {self.min_norm_fraction}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        try:
            object.__setattr__(self, "mixing", Mixing(self.mixing))
        except ValueError:
            allowed = ", ".join(m.value for m in Mixing)
            raise ConfigError(f"mixing must be one of {allowed}, got {self.mixing!r}") from None
        if self.mixing_fraction is not None and not 0.0 <= self.mixing_fraction < 0.5:
            raise ConfigError(f"mixing_fraction must be in [0, 0.5), got {self.mixing_fraction}")
        if self.bucket_size < 1:
            raise ConfigError(f"bucket_size must be >= 1, got {self.bucket_size}")
        if self.sign_gate is not None and not 0.0 <= self.sign_gate <= 1.0:
            raise ConfigError(f"sign_gate must be in [0, 1] or None, got {self.sign_gate}")
        object.__setattr__(self, "spectral", tuple(tuple(st) for st in self.spectral))
        for st in self.spectral:
            if len(st) != 2:
                raise ConfigError(f"each spectral stage is (fraction, scale), got {st!r}")
            frac, scale = st
            if not 0.0 <= frac < 0.5:
                raise ConfigError(f"a spectral stage's fraction must be in [0, 0.5), got {frac}")
            if scale is not None and not scale > 0.0:
                raise ConfigError(f"a spectral stage's scale must be > 0 or None, got {scale}")
        if not 0.0 <= self.worker_momentum < 1.0:
            raise ConfigError(f"worker_momentum must be in [0, 1), got {self.worker_momentum}")


def capped_claims(weights: Tensor, cap: float) -> Tensor:
    """Claimed weights capped at ``cap`` times their median (float64): a provider that
    inflates its example count gains at most that factor over an honest median one. The
    payout game caps the same way (``deai.incentives.valuation``)."""
    if not cap >= 1.0:
        raise ConfigError(f"weight cap must be >= 1, got {cap}")
    w = as64(weights)
    return w.clamp(max=cap * float(w.median())) if w.numel() else w


def sybil_damping(history: Tensor, threshold: float) -> Tensor:
    """Weights ``clip((1 - s_i) / (1 - threshold), 0, 1)`` with ``s_i`` the largest pardoned
    cosine similarity of row ``i``'s history to another's (float64 ``[n]``)."""
    if history.shape[0] == 1:
        return torch.ones(1, dtype=torch.float64)
    s = pardoned_similarity(history).max(dim=1).values
    return ((1.0 - s) / (1.0 - threshold)).clamp(0.0, 1.0)


def spectral_outliers(x: Tensor, w: Tensor, m: int, scale: float | None = None) -> Tensor:
    """The ``m`` live rows (``w > 0``) with the largest squared projection on the top
    principal direction of the rows centred on their weighted coordinate median (Divide and
    Conquer, Shejwalkar & Houmansadr, NDSS 2021), as a bool mask ``[n]``. ``scale``: divide
    each centred coordinate by ``max(MAD_j, scale * median_j MAD_j)`` first. Flags no row
    when ``m`` is 0 (a share of few rows rounds down) or fewer than ``m + 2`` rows are live:
    the stage then excludes nobody, which the round's ``excluded`` shows."""
    n = x.shape[0]
    out = torch.zeros(n, dtype=torch.bool)
    live = torch.nonzero(w > 0).flatten()
    if m <= 0 or live.numel() <= m + 1:
        return out
    xl = as64(x[live])
    c = weighted_coordinate_median(xl, w[live])
    z = xl - c
    if scale is not None:
        mad = weighted_coordinate_median(z.abs(), w[live])
        floor = scale * float(mad.median())
        if floor > 0.0:
            z = z / mad.clamp(min=floor)
    _, vecs = torch.linalg.eigh(z @ z.T)  # top eigenvector of the Gram matrix = top left
    score = vecs[:, -1] ** 2  # singular vector: squared projections up to sigma_1^2
    out[live[torch.argsort(score, descending=True, stable=True)[:m]]] = True
    return out


class DefaultAggregator:
    """Norm bounding, Sybil damping, a robust centre, then dropping opposed rows.

    Stateful (the Sybil histories): build one per training job and call it every round.
    ``scores``: ``norm`` (before clipping), ``sybil`` (damping weight), ``clip_scale``.
    """

    def __init__(self, config: DefaultConfig | None = None) -> None:
        self.config = config or DefaultConfig()
        self.history = SimilarityHistory()
        self.momenta: dict[str, Tensor] = {}  # worker momentum per sender

    def _damping(self, updates: Tensor, ctx: RoundContext | None) -> Tensor:
        threshold = self.config.sybil_threshold
        if threshold is None:
            return torch.ones(updates.shape[0], dtype=torch.float64)
        if ctx is None or not ctx.senders:
            raise AggregationError(
                "the default aggregator's Sybil damping needs ctx.senders; "
                "pass them or set sybil_threshold=None"
            )
        return sybil_damping(self.history.add(updates, ctx.senders), threshold)

    def _center(self, x: Tensor, w: Tensor, raw: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The robust centre of float64 ``x`` under weights ``w`` (some positive), and each
        row's clipping factor (ones for the trimmed mean)."""
        cfg = self.config
        raw = x if raw is None else raw
        ones = torch.ones(x.shape[0], dtype=torch.float64)
        if cfg.center is CenterRule.TRIMMED_MEAN:
            return self._gate(weighted_trimmed_mean(x, w, cfg.trim_fraction), x, w), ones
        if cfg.center is CenterRule.MEAN:
            return self._gate(normalized_weights(w) @ x, x, w), ones
        if cfg.center is CenterRule.BANDED_MEAN:
            lo, hi = weighted_band(raw, w, cfg.trim_fraction)
            v = torch.minimum(torch.maximum(normalized_weights(w) @ x, lo), hi)
            return self._gate(v, x, w), ones
        wn = normalized_weights(w)
        v0 = weighted_coordinate_median(x, wn)
        tau = cfg.tau_multiplier * float(torch.quantile(row_distances(x[wn > 0], v0), 0.5))
        return clip_iterate(x, wn, v0, tau, cfg.iterations)

    def _gate(self, v: Tensor, x: Tensor, w: Tensor) -> Tensor:
        """Zero the coordinates whose weighted sign agreement ``|sum_i w_i sign(x_ij)| /
        sum_i w_i`` is below ``sign_gate`` (the robust learning rate of Ozdayi, Kantarcioglu,
        Gel, AAAI 2021, zeroing instead of flipping): a coordinate that only a minority
        moves, like the weights of a backdoor trigger's pixels, is not applied."""
        theta = self.config.sign_gate
        if theta is None:
            return v
        agree = (normalized_weights(w) @ torch.sign(x)).abs()  # [d]
        return torch.where(agree < theta, 0.0, v)

    def _center_or_zero(self, x: Tensor, w: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """Mixing, then :meth:`_center`; zeros when no row has weight left."""
        n, d = x.shape
        if float(w.sum()) <= 0.0:
            return torch.zeros(d, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        cfg = self.config
        if cfg.mixing is Mixing.NNM:
            live = int((w > 0).sum())
            frac = cfg.trim_fraction if cfg.mixing_fraction is None else cfg.mixing_fraction
            mixed = nearest_neighbour_mixing(x, w, int(frac * live), cfg.mixing_weighted)
            return self._center(mixed, w, x)
        if cfg.mixing is Mixing.BUCKETING:
            means, totals = bucketing(x, w, cfg.bucket_size, seed)
            v, _ = self._center(means, totals)
            return v, torch.ones(n, dtype=torch.float64)
        return self._center(x, w)

    def _claims(self, weights: Tensor) -> Tensor:
        """Claimed weights capped at ``weight_cap`` times their median."""
        return capped_claims(weights, self.config.weight_cap)

    def _momentum(self, x: Tensor, ctx: RoundContext | None) -> Tensor:
        """Per-sender momentum ``m_s <- beta m_s + (1 - beta) x_s`` of the clipped rows
        (Karimireddy, He, Jaggi, ICML 2021); a sender's first row starts its momentum."""
        beta = self.config.worker_momentum
        if beta == 0.0:
            return x
        if ctx is None or len(ctx.senders) != x.shape[0]:
            raise AggregationError("worker momentum needs ctx.senders, one per row")
        rows = []
        for s, row in zip(ctx.senders, x, strict=True):
            prev = self.momenta.get(s)
            m = row if prev is None else beta * prev + (1.0 - beta) * row
            self.momenta[s] = m
            rows.append(m)
        return torch.stack(rows)

    def __call__(
        self, updates: Tensor, weights: Tensor, ctx: RoundContext | None = None
    ) -> Aggregate:
        check_stack(updates, weights)
        norms = torch.linalg.vector_norm(as64(updates), dim=1)
        x = clip_norms(updates, self.config.norm_multiplier * median_norm(updates))  # [n, d]
        x = self._momentum(as64(x), ctx)
        damping = self._damping(updates, ctx)
        w = damping * self._claims(weights) if self.config.use_weights else damping.clone()
        floor = self.config.min_norm_fraction * float(norms.median())
        w = torch.where(norms < floor, 0.0, w)  # no signal: free-riders
        scores = {"norm": norms.tolist(), "sybil": damping.tolist()}
        seed = 0 if ctx is None else ctx.round
        live = int((w > 0).sum())  # each stage's share is of the rows live before any stage
        for frac, spread in self.config.spectral:
            w = torch.where(spectral_outliers(x, w, int(frac * live), spread), 0.0, w)
        v, scale = self._center_or_zero(x, w, seed)
        if self.config.drop_opposed and float(v.norm()) > 0.0:
            opposed = (x @ v) <= 0.0  # [n] rows with cosine <= 0 to the centre
            if bool((opposed & (w > 0)).any()):
                w = torch.where(opposed, 0.0, w)
                v, scale = self._center_or_zero(x, w, seed)
        excluded = tuple(int(i) for i in torch.nonzero(w == 0).flatten())
        scores["clip_scale"] = scale.tolist()
        return Aggregate(v.to(updates.dtype), excluded, scores)
