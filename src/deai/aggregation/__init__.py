"""Robust aggregation rules: pure functions over ``Tensor[n, d]`` (see ``base``).

Build one by name with :func:`build_aggregator`; the recommended defence is
:class:`DefaultAggregator` (``AggregatorName.DEFAULT``), see ``docs/robustness.md``.
"""

from deai.aggregation.base import Aggregate, Aggregator, RoundContext, check_stack, weighted_mean
from deai.aggregation.bulyan import bulyan
from deai.aggregation.centered_clipping import centered_clipping
from deai.aggregation.default import CenterRule, DefaultAggregator, DefaultConfig, sybil_damping
from deai.aggregation.fltrust import fltrust, trust_scores
from deai.aggregation.foolsgold import FoolsGold, SimilarityHistory, foolsgold_weights
from deai.aggregation.geometric_median import geometric_median
from deai.aggregation.krum import krum, krum_scores, multi_krum
from deai.aggregation.median import coordinate_median, median, weighted_coordinate_median
from deai.aggregation.norm_bounding import clip_norms, median_norm, norm_bounding
from deai.aggregation.registry import AggregatorConfig, AggregatorName, build_aggregator
from deai.aggregation.trimmed_mean import trim_count, trimmed_mean, weighted_trimmed_mean

__all__ = [
    "Aggregate",
    "Aggregator",
    "AggregatorConfig",
    "AggregatorName",
    "CenterRule",
    "DefaultAggregator",
    "DefaultConfig",
    "FoolsGold",
    "RoundContext",
    "SimilarityHistory",
    "build_aggregator",
    "bulyan",
    "centered_clipping",
    "check_stack",
    "clip_norms",
    "coordinate_median",
    "fltrust",
    "foolsgold_weights",
    "geometric_median",
    "krum",
    "krum_scores",
    "median",
    "median_norm",
    "multi_krum",
    "norm_bounding",
    "sybil_damping",
    "trim_count",
    "trimmed_mean",
    "trust_scores",
    "weighted_coordinate_median",
    "weighted_mean",
    "weighted_trimmed_mean",
]
