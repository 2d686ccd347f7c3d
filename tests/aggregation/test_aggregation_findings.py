"""Issue 16's aggregation findings, each reproduced: these failed before the fixes."""

from __future__ import annotations

import math

import pytest
import torch

from deai.aggregation import CenterRule, DefaultAggregator, DefaultConfig, geometric_median
from deai.aggregation.mixing import bucketing, nearest_neighbour_mixing
from deai.aggregation.trimmed_mean import weighted_trimmed_mean
from deai.errors import AggregationError, ConfigError


@pytest.mark.parametrize("nu", [math.nan, 0.0, -1.0])
def test_geometric_median_refuses_a_bad_nu(nu: float) -> None:
    """``nu=nan`` used to return NaNs."""
    with pytest.raises(AggregationError):
        geometric_median(torch.randn(5, 3), torch.ones(5), nu=nu)


def test_default_built_from_a_spec_uses_the_configured_centre() -> None:
    """A spec's parameters arrive as JSON (the centre as a plain string); the default then
    silently ran centered clipping instead of the trimmed mean, and ``trim_fraction`` did
    nothing: every simulated run of the default used the wrong centre."""
    import deai.job  # noqa: F401  (the registry's parameter models live there)
    from deai.registry import aggregators

    rule = aggregators.build("default", {"sybil_threshold": None, "trim_fraction": 0.2})
    assert rule.config.center is CenterRule.TRIMMED_MEAN
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    expected = weighted_trimmed_mean(x, torch.ones(10), 0.2)
    got = rule(x, torch.ones(10)).vector
    # no clipping beyond the median norm in this stack would make them equal; compare with
    # the same pipeline built directly
    direct = DefaultAggregator(DefaultConfig(sybil_threshold=None, trim_fraction=0.2))
    assert torch.allclose(got, direct(x, torch.ones(10)).vector)
    assert expected.shape == got.shape
    with pytest.raises(ConfigError, match="center"):
        DefaultConfig(center="average")  # type: ignore[arg-type]


def test_nearest_neighbour_mixing_averages_the_m_minus_f_nearest() -> None:
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    out = nearest_neighbour_mixing(x, torch.ones(4), 1)
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 1.0, 1.0, 13.0 / 3]).double())
    zero_w = nearest_neighbour_mixing(x, torch.tensor([1.0, 1.0, 1.0, 0.0]), 1)
    assert float(zero_w[3, 0]) == 10.0  # rows without weight are left out and unchanged
    expected = torch.tensor([0.5, 0.5, 1.5]).double()  # ties go to the lower index
    assert torch.allclose(zero_w[:3].flatten(), expected)
    with pytest.raises(AggregationError):
        nearest_neighbour_mixing(x, torch.ones(4), 4)


def test_weighted_mixing_keeps_fedavg_weights_in_each_neighbourhood() -> None:
    """Finding 1 (part): the paper's unweighted NNM gives a 5-example provider the voice of
    a 100-example one in every neighbourhood, which cost 7.8 points at Dirichlet 0.05 on
    digits (50 providers, seed 0: 0.660 unweighted, 0.738 weighted). Weighted mixing
    averages each neighbourhood by the rows' weights; the default uses it."""
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    w = torch.tensor([1.0, 3.0, 1.0, 1.0])
    out = nearest_neighbour_mixing(x, w, 1, weighted=True)
    # row 0's 3 nearest: rows 0, 1, 2 -> (0 + 3 + 2) / 5
    assert torch.allclose(out[0], torch.tensor([1.0]).double())
    assert torch.allclose(out[3], torch.tensor([(3.0 + 2.0 + 10.0) / 5]).double())
    unweighted = nearest_neighbour_mixing(x, w, 1)
    assert not torch.allclose(out[3], unweighted[3])
    assert torch.allclose(
        nearest_neighbour_mixing(x, torch.ones(4), 1, weighted=True),
        nearest_neighbour_mixing(x, torch.ones(4), 1),
    )
    assert DefaultConfig().mixing_weighted


def test_bucketing_is_seeded_and_conserves_weight() -> None:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    w = torch.ones(7)
    a, ta = bucketing(x, w, 2, seed=5)
    b, tb = bucketing(x, w, 2, seed=5)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert a.shape == (4, 3) and float(ta.sum()) == 7.0


@pytest.mark.parametrize(
    "bad",
    [
        {"mixing": "shuffle"},
        {"mixing_fraction": 0.5},
        {"bucket_size": 0},
        {"worker_momentum": 1.0},
        {"worker_momentum": math.nan},
    ],
)
def test_default_config_refuses_bad_mixing(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DefaultConfig(**bad)  # type: ignore[arg-type]
