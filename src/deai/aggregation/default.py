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
3. **Robust centre** (Karimireddy et al. 2021): centered clipping, started from the weighted
   coordinate-wise median of the clipped rows, with ``tau`` = ``tau_multiplier`` times the
   median distance of the rows to that start. Each remaining row's pull is bounded by
   ``tau``, so in-distribution attacks (ALIE, IPM, min-max, min-sum) move the result by at
   most about their weight share times ``tau`` per iteration, unlike Krum or the median,
   which they are built to fool into *selecting* them.

Threat model: fewer than half of the (Sybil-damped) weight is Byzantine; the Sybil step needs
``ctx.senders`` (a missing list is an error unless ``sybil_threshold`` is ``None``). Rows whose
final weight is zero are ``excluded``. Cost ``O(n^2 d)`` (similarities) + ``O(L n d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from deai.aggregation._common import as64, normalized_weights, row_distances
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.aggregation.centered_clipping import clip_iterate
from deai.aggregation.foolsgold import SimilarityHistory, pardoned_similarity
from deai.aggregation.median import weighted_coordinate_median
from deai.aggregation.norm_bounding import clip_norms, median_norm
from deai.errors import AggregationError, ConfigError


@dataclass(frozen=True)
class DefaultConfig:
    norm_multiplier: float = 1.0  # clip rows to this multiple of the median row norm
    sybil_threshold: float | None = 0.9  # history cosine above which weight ramps to 0; None: off
    tau_multiplier: float = 1.0  # clipping radius in units of the median distance to the start
    iterations: int = 3  # centered-clipping iterations

    def __post_init__(self) -> None:
        if not self.norm_multiplier > 0.0:
            raise ConfigError(f"norm_multiplier must be > 0, got {self.norm_multiplier}")
        if self.sybil_threshold is not None and not -1.0 <= self.sybil_threshold < 1.0:
            raise ConfigError(
                f"sybil_threshold must be in [-1, 1) or None, got {self.sybil_threshold}"
            )
        if not self.tau_multiplier > 0.0:
            raise ConfigError(f"tau_multiplier must be > 0, got {self.tau_multiplier}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")


def sybil_damping(history: Tensor, threshold: float) -> Tensor:
    """Weights ``clip((1 - s_i) / (1 - threshold), 0, 1)`` with ``s_i`` the largest pardoned
    cosine similarity of row ``i``'s history to another's (float64 ``[n]``)."""
    if history.shape[0] == 1:
        return torch.ones(1, dtype=torch.float64)
    s = pardoned_similarity(history).max(dim=1).values
    return ((1.0 - s) / (1.0 - threshold)).clamp(0.0, 1.0)


class DefaultAggregator:
    """Norm bounding, then Sybil damping, then centered clipping around the median.

    Stateful (the Sybil histories): build one per training job and call it every round.
    ``scores``: ``norm`` (before clipping), ``sybil`` (damping weight), ``clip_scale``.
    """

    def __init__(self, config: DefaultConfig | None = None) -> None:
        self.config = config or DefaultConfig()
        self.history = SimilarityHistory()

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

    def __call__(
        self, updates: Tensor, weights: Tensor, ctx: RoundContext | None = None
    ) -> Aggregate:
        check_stack(updates, weights)
        cfg = self.config
        norms = torch.linalg.vector_norm(as64(updates), dim=1)
        x = clip_norms(updates, cfg.norm_multiplier * median_norm(updates))  # [n, d] float64
        damping = self._damping(updates, ctx)
        combined = damping * as64(weights)
        excluded = tuple(int(i) for i in torch.nonzero(combined == 0).flatten())
        scores = {"norm": norms.tolist(), "sybil": damping.tolist()}
        if float(combined.sum()) == 0.0:
            zero = torch.zeros(updates.shape[1], dtype=updates.dtype)
            return Aggregate(zero, excluded, {**scores, "clip_scale": [0.0] * len(norms)})
        w = normalized_weights(combined)
        v0 = weighted_coordinate_median(x, w)
        live = w > 0
        tau = cfg.tau_multiplier * float(torch.quantile(row_distances(x[live], v0), 0.5))
        v, scale = clip_iterate(x, w, v0, tau, cfg.iterations)
        return Aggregate(v.to(updates.dtype), excluded, {**scores, "clip_scale": scale.tolist()})
