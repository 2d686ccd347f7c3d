"""Aggregator registry: an :class:`AggregatorName` and a frozen :class:`AggregatorConfig`
build any rule as an :class:`~deai.aggregation.base.Aggregator`.

Each rule reads only the fields it needs. Static nonsense (negative ``f``, a trim fraction of
0.7) is a :class:`~deai.errors.ConfigError` at construction; whatever depends on the number of
rows ``n`` (Krum's ``n > 2f + 2``, Bulyan's ``n >= 4f + 3``, ``2 trim < n``) is checked on every
call and raises :class:`~deai.errors.AggregationError`: never a silent fallback. Stateful rules
(FoolsGold, the default) get a fresh instance per call of :func:`build_aggregator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from torch import Tensor

from deai.aggregation.base import Aggregate, Aggregator, RoundContext, weighted_mean
from deai.aggregation.bulyan import bulyan
from deai.aggregation.centered_clipping import centered_clipping
from deai.aggregation.default import DefaultAggregator, DefaultConfig
from deai.aggregation.fltrust import fltrust
from deai.aggregation.foolsgold import FoolsGold
from deai.aggregation.geometric_median import geometric_median
from deai.aggregation.krum import krum, multi_krum
from deai.aggregation.median import median
from deai.aggregation.norm_bounding import norm_bounding
from deai.aggregation.trimmed_mean import trim_count, trimmed_mean
from deai.errors import ConfigError


class AggregatorName(StrEnum):
    MEAN = "mean"  # FedAvg weighted mean, no robustness
    KRUM = "krum"  # needs n > 2f + 2
    MULTI_KRUM = "multi_krum"  # needs n > 2f + 2; averages `multi_krum_m` rows
    MEDIAN = "median"  # coordinate-wise median
    TRIMMED_MEAN = "trimmed_mean"  # trims `trim_fraction` (or f) rows per side
    GEOMETRIC_MEDIAN = "geometric_median"  # RFA smoothed Weiszfeld
    BULYAN = "bulyan"  # needs n >= 4f + 3
    CENTERED_CLIPPING = "centered_clipping"  # around the coordinate-wise median
    NORM_BOUNDING = "norm_bounding"  # clip to `norm_bound` (or the median norm), then mean
    FLTRUST = "fltrust"  # needs ctx.reference
    FOOLSGOLD = "foolsgold"  # needs ctx.senders; stateful
    DEFAULT = "default"  # norm bound + Sybil damping + trimmed mean + opposed drop; stateful


@dataclass(frozen=True)
class AggregatorConfig:
    f: int = 0  # assumed Byzantine rows (Krum, Multi-Krum, Bulyan; trimmed mean's trim)
    multi_krum_m: int | None = None  # rows Multi-Krum averages; None: n - f
    trim_fraction: float | None = None  # trimmed per side, fraction of n; None: trim f rows
    tau: float | None = None  # centered-clipping radius; None: median distance to the median
    cc_iterations: int = 3  # centered-clipping iterations
    norm_bound: float | None = None  # norm bounding's L2 bound; None: the median row norm
    gm_nu: float = 1e-6  # Weiszfeld smoothing
    gm_max_iter: int = 200  # Weiszfeld iterations at most
    gm_ftol: float = 1e-10  # Weiszfeld relative objective tolerance
    foolsgold_kappa: float = 1.0  # FoolsGold logit confidence
    default: DefaultConfig = field(default_factory=DefaultConfig)  # the default composition

    def __post_init__(self) -> None:
        if isinstance(self.f, bool) or not isinstance(self.f, int):
            raise ConfigError(f"f must be an integer, got {self.f!r}")
        if self.f < 0:
            raise ConfigError(f"f must be >= 0, got {self.f}")
        m = self.multi_krum_m
        if m is not None and (isinstance(m, bool) or not isinstance(m, int)):
            raise ConfigError(f"multi_krum_m must be an integer or None, got {m!r}")
        if self.multi_krum_m is not None and self.multi_krum_m < 1:
            raise ConfigError(f"multi_krum_m must be >= 1 or None, got {self.multi_krum_m}")
        if self.trim_fraction is not None and not 0.0 <= self.trim_fraction < 0.5:
            raise ConfigError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if self.tau is not None and not self.tau > 0.0:
            raise ConfigError(f"tau must be > 0 or None, got {self.tau}")
        if isinstance(self.cc_iterations, bool) or not isinstance(self.cc_iterations, int):
            raise ConfigError(f"cc_iterations must be an integer, got {self.cc_iterations!r}")
        if self.cc_iterations < 1:
            raise ConfigError(f"cc_iterations must be >= 1, got {self.cc_iterations}")
        if self.norm_bound is not None and not self.norm_bound > 0.0:
            raise ConfigError(f"norm_bound must be > 0 or None, got {self.norm_bound}")
        if not (self.gm_nu > 0.0 and self.gm_max_iter >= 1 and self.gm_ftol >= 0.0):
            raise ConfigError("need gm_nu > 0, gm_max_iter >= 1 and gm_ftol >= 0")
        if not self.foolsgold_kappa > 0.0:
            raise ConfigError(f"foolsgold_kappa must be > 0, got {self.foolsgold_kappa}")


def _trimmed(c: AggregatorConfig) -> Aggregator:
    def rule(updates: Tensor, weights: Tensor, ctx: RoundContext | None = None) -> Aggregate:
        n = updates.shape[0] if updates.ndim == 2 else 0
        trim = c.f if c.trim_fraction is None else trim_count(n, c.trim_fraction)
        return trimmed_mean(updates, weights, ctx, trim=trim)

    return rule


def build_aggregator(name: AggregatorName, config: AggregatorConfig | None = None) -> Aggregator:
    """Construct the rule ``name`` from ``config`` (defaults if ``None``)."""
    c = config or AggregatorConfig()
    try:
        key = AggregatorName(name)
    except ValueError:
        allowed = ", ".join(a.value for a in AggregatorName)
        raise ConfigError(f"unknown aggregator {name!r}; allowed: {allowed}") from None
    match key:
        case AggregatorName.MEAN:
            return weighted_mean
        case AggregatorName.KRUM:
            return lambda u, w, ctx=None: krum(u, w, ctx, f=c.f)
        case AggregatorName.MULTI_KRUM:
            return lambda u, w, ctx=None: multi_krum(u, w, ctx, f=c.f, m=c.multi_krum_m)
        case AggregatorName.MEDIAN:
            return median
        case AggregatorName.TRIMMED_MEAN:
            return _trimmed(c)
        case AggregatorName.GEOMETRIC_MEDIAN:
            return lambda u, w, ctx=None: geometric_median(
                u, w, ctx, nu=c.gm_nu, max_iter=c.gm_max_iter, ftol=c.gm_ftol
            )
        case AggregatorName.BULYAN:
            return lambda u, w, ctx=None: bulyan(u, w, ctx, f=c.f)
        case AggregatorName.CENTERED_CLIPPING:
            return lambda u, w, ctx=None: centered_clipping(
                u, w, ctx, tau=c.tau, iterations=c.cc_iterations
            )
        case AggregatorName.NORM_BOUNDING:
            return lambda u, w, ctx=None: norm_bounding(u, w, ctx, bound=c.norm_bound)
        case AggregatorName.FLTRUST:
            return fltrust
        case AggregatorName.FOOLSGOLD:
            return FoolsGold(c.foolsgold_kappa)
        case AggregatorName.DEFAULT:
            return DefaultAggregator(c.default)
    raise ConfigError(f"unknown aggregator {name!r}")  # pragma: no cover - exhaustive match
