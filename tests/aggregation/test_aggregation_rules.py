"""Unit tests of each rule's behaviour, errors and the registry."""

from __future__ import annotations

import pytest
import torch

from deai.aggregation import (
    AggregatorConfig,
    AggregatorName,
    CenterRule,
    DefaultAggregator,
    DefaultConfig,
    FoolsGold,
    RoundContext,
    build_aggregator,
    bulyan,
    centered_clipping,
    clip_norms,
    coordinate_median,
    fltrust,
    foolsgold_weights,
    geometric_median,
    krum,
    median,
    multi_krum,
    norm_bounding,
    sybil_damping,
    trim_count,
    trimmed_mean,
    weighted_coordinate_median,
    weighted_mean,
)
from deai.errors import AggregationError, ConfigError


def _cluster(n: int, d: int, seed: int, spread: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(d, generator=g)
    return centre, centre + spread * torch.randn(n, d, generator=g)


def _senders(n: int, prefix: str = "p") -> RoundContext:
    return RoundContext(senders=tuple(f"{prefix}{i}" for i in range(n)))


# --- misconfiguration is an error -------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, w: krum(x, w, f=2), "n > 2f \\+ 2"),  # n = 6 = 2f + 2
        (lambda x, w: krum(x, w, f=-1), "f >= 0"),
        (lambda x, w: multi_krum(x, w, f=1, m=6), "m <= n - f"),
        (lambda x, w: multi_krum(x, w, f=1, m=0), "1 <= m"),
        (lambda x, w: bulyan(x, w, f=1), "n >= 4f \\+ 3"),  # n = 6 < 7
        (lambda x, w: trimmed_mean(x, w, trim=3), "2 \\* trim < n"),
        (lambda x, w: trimmed_mean(x, w, trim=-1), "0 <= trim"),
        (lambda x, w: centered_clipping(x, w, tau=0.0), "tau > 0"),
        (lambda x, w: centered_clipping(x, w, iterations=0), "iterations >= 1"),
        (lambda x, w: centered_clipping(x, w, center=torch.ones(3)), "center"),
        (lambda x, w: geometric_median(x, w, nu=0.0), "nu > 0"),
        (lambda x, w: fltrust(x, w), "ctx.reference"),
        (lambda x, w: fltrust(x, w, RoundContext(reference=torch.ones(3))), "reference"),
        (lambda x, w: FoolsGold()(x, w), "ctx.senders"),
        (lambda x, w: FoolsGold()(x, w, RoundContext(senders=("a",) * 6)), "distinct"),
        (lambda x, w: FoolsGold()(x, w, RoundContext(senders=("a", "b"))), "one sender id"),
        (lambda x, w: DefaultAggregator()(x, w), "ctx.senders"),
        (lambda x, w: weighted_mean(x, torch.zeros(6)), "sum to zero"),
        (lambda x, w: geometric_median(x, torch.zeros(6)), "sum to zero"),
        (lambda x, w: median(x, torch.ones(5)), "weights must have shape"),
        (lambda x, w: median(x[0], w), "non-empty"),
        (lambda x, w: median(x, -w), "non-negative"),
    ],
)
def test_misconfiguration_raises(call: object, match: str) -> None:
    _, x = _cluster(6, 4, 0)
    with pytest.raises(AggregationError, match=match):
        call(x, torch.ones(6))  # type: ignore[operator]


def test_trim_count_rejects_half() -> None:
    assert trim_count(10, 0.2) == 2
    with pytest.raises(AggregationError):
        trim_count(10, 0.5)


# --- each rule --------------------------------------------------------------------------


def test_krum_and_multi_krum_drop_far_rows_and_ignore_weights_in_selection() -> None:
    centre, honest = _cluster(8, 5, 1)
    x = torch.cat([honest, torch.stack([centre + 50.0, centre - 50.0])])  # rows 8, 9: attackers
    w = torch.ones(10)
    w[8] = 1000.0  # a huge claimed example count does not help the attacker get picked
    k = krum(x, w, f=2)
    assert len(k.excluded) == 9 and {8, 9} <= set(k.excluded)
    mk = multi_krum(x, w, f=2)
    assert set(mk.excluded) == {8, 9}
    assert torch.allclose(mk.vector, honest.mean(dim=0), atol=1e-6)
    assert len(mk.scores["krum"]) == 10


def test_median_even_and_weighted_median() -> None:
    x = torch.tensor([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [10.0, 1.0]])
    assert torch.equal(coordinate_median(x), torch.tensor([2.5, 2.5], dtype=torch.float64))
    w = torch.tensor([0.0, 1.0, 1.0, 0.0])  # rows 1 and 2 only: lower weighted median
    assert torch.equal(
        weighted_coordinate_median(x, w), torch.tensor([2.0, 2.0], dtype=torch.float64)
    )
    w_heavy = torch.tensor([0.0, 0.0, 0.0, 5.0])
    assert torch.equal(weighted_coordinate_median(x, w_heavy), x[3].double())


def test_trimmed_mean_with_zero_trim_is_the_mean() -> None:
    _, x = _cluster(7, 3, 2)
    out = trimmed_mean(x, torch.ones(7), trim=0)
    assert torch.allclose(out.vector, x.mean(dim=0), atol=1e-6)


def test_geometric_median_known_answers() -> None:
    e1 = torch.tensor([1.0, 0.0, 0.0])
    line = torch.stack([t * e1 for t in (0.0, 1.0, 2.0, 10.0, 100.0)])  # collinear: the median
    gm = geometric_median(line, torch.ones(5)).vector
    assert torch.allclose(gm, 2.0 * e1, atol=1e-4)
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 5.0])  # one row holds more than half the weight
    gm_w = geometric_median(line, w).vector
    assert torch.allclose(gm_w, 100.0 * e1, atol=1e-3)


def test_bulyan_trims_colluding_attackers_and_stays_near_the_honest_mean() -> None:
    centre, honest = _cluster(9, 6, 3)
    x = torch.cat([honest, (centre + 30.0).repeat(2, 1)])  # n = 11 >= 4 * 2 + 3
    out = bulyan(x, torch.ones(11), f=2)
    # Late Krum rounds on few rows may select one of two identical clones (the paper's
    # iterated Krum); the coordinate-wise trimming then removes its values.
    assert len(out.excluded) == 4 and not {9, 10} <= set(range(11)) - set(out.excluded)
    assert bool((out.vector >= honest.min(dim=0).values).all())
    assert bool((out.vector <= honest.max(dim=0).values).all())
    assert float((out.vector - honest.mean(dim=0)).norm()) < 0.3


def test_centered_clipping_bounds_one_outliers_pull() -> None:
    centre = torch.tensor([1.0, -2.0, 0.5])
    x = torch.cat([centre.repeat(9, 1), torch.tensor([[1e6, 1e6, -1e6]])])
    out = centered_clipping(x, torch.ones(10), tau=0.5, iterations=4, center=centre)
    assert float((out.vector - centre).norm()) <= 4 * 0.5 / 10 + 1e-6
    assert out.scores["clip_scale"][9] < 1e-5 and out.scores["clip_scale"][0] == 1.0


def test_norm_bounding_clips_to_the_median_norm() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0], [300.0, 400.0], [0.0, 0.0]])
    assert torch.allclose(clip_norms(x, 1.0).norm(dim=1).float(), torch.tensor([1.0, 1, 1, 1, 0]))
    out = norm_bounding(x, torch.ones(5))  # median norm 2
    expected = torch.tensor([[1.2, 1.6], [0, 1], [0, 2], [1.2, 1.6], [0, 0]]).mean(dim=0)
    assert torch.allclose(out.vector, expected, atol=1e-6)
    assert out.scores["norm"] == pytest.approx([5.0, 1.0, 2.0, 500.0, 0.0])
    small = norm_bounding(x[1:3], torch.tensor([1.0, 3.0]), bound=10.0)  # nothing clipped
    assert torch.allclose(small.vector, weighted_mean(x[1:3], torch.tensor([1.0, 3.0])).vector)


def test_fltrust_trusts_by_direction_and_caps_norms() -> None:
    g0 = torch.tensor([1.0, 1.0, 0.0])
    x = torch.tensor([[2.0, 2.0, 0.0], [-5.0, -5.0, 0.0], [1e4, 1e4, 0.0], [0.0, 0.0, 0.0]])
    out = fltrust(x, torch.ones(4), RoundContext(reference=g0))
    assert out.excluded == (1, 3)
    assert torch.allclose(out.vector, g0, atol=1e-6)  # every kept row rescaled to ||g0||
    assert out.scores["trust"] == pytest.approx([1.0, 0.0, 1.0, 0.0])
    none = fltrust(-x[:3], torch.ones(3), RoundContext(reference=torch.tensor([1.0, 1.0, 0.0])))
    assert none.excluded == (0, 2) and float(none.vector.norm()) == pytest.approx(2**0.5)
    all_out = fltrust(x[1:2], torch.ones(1), RoundContext(reference=g0))
    assert all_out.excluded == (0,) and float(all_out.vector.abs().sum()) == 0.0


def test_foolsgold_zeroes_sybil_clones_and_keeps_distinct_clients() -> None:
    g = torch.Generator().manual_seed(4)
    honest = torch.randn(6, 20, generator=g)
    sybil = torch.randn(20, generator=g).repeat(4, 1)
    x = torch.cat([honest, sybil])
    fg = FoolsGold()
    out = fg(x, torch.ones(10), _senders(10))
    assert set(out.excluded) == {6, 7, 8, 9}
    assert all(a > 0 for a in out.scores["foolsgold"][:6])
    # history accumulates: a second round of fresh noise from the Sybils is still caught
    x2 = torch.cat(
        [torch.randn(6, 20, generator=g), sybil + 0.01 * torch.randn(4, 20, generator=g)]
    )
    out2 = fg(x2, torch.ones(10), _senders(10))
    assert {6, 7, 8, 9} <= set(out2.excluded)
    assert len(fg.history) == 10
    with pytest.raises(AggregationError, match="dimension"):
        fg(torch.randn(10, 5, generator=g), torch.ones(10), _senders(10))


def test_foolsgold_weights_edge_cases() -> None:
    assert foolsgold_weights(torch.ones(1, 3)).tolist() == [1.0]
    assert foolsgold_weights(torch.ones(3, 3)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(AggregationError):
        foolsgold_weights(torch.ones(2, 3), kappa=0.0)


def test_sybil_damping_ramp() -> None:
    e = torch.eye(3, dtype=torch.float64)
    h = torch.stack([e[0], e[0], e[1], e[2]])  # two clones, two orthogonal clients
    assert sybil_damping(h, 0.9).tolist() == [0.0, 0.0, 1.0, 1.0]


# --- the default composition ------------------------------------------------------------


def test_default_matches_the_mean_on_benign_clustered_updates() -> None:
    _, x = _cluster(20, 30, 5, spread=0.05)
    out = DefaultAggregator()(x, torch.ones(20), _senders(20))
    assert out.excluded == ()
    assert float((out.vector - x.mean(dim=0)).norm()) < 0.05


@pytest.mark.parametrize("kind", ["boosted", "flipped", "noise", "clones"])
def test_default_resists_attacks_on_synthetic_updates(kind: str) -> None:
    """20 honest rows around a common direction plus 20% attackers of each kind."""
    g = torch.Generator().manual_seed(6)
    truth = torch.randn(50, generator=g)
    honest = truth + 0.5 * torch.randn(16, 50, generator=g)
    bad = {
        "boosted": 100.0 * (-truth).repeat(4, 1),
        "flipped": -honest[:4],
        "noise": 20.0 * torch.randn(4, 50, generator=g),
        "clones": (-truth).repeat(4, 1),
    }[kind]
    x = torch.cat([honest, bad])
    agg = DefaultAggregator()
    out = agg(x, torch.ones(20), _senders(20))
    err_default = float((out.vector - honest.mean(dim=0)).norm())
    err_mean = float((x.mean(dim=0) - honest.mean(dim=0)).norm())
    assert err_default < 0.5 * float(truth.norm())
    assert err_default < err_mean
    assert float(out.vector @ truth) > 0
    if kind == "clones":
        assert set(out.excluded) == {16, 17, 18, 19}


def test_default_without_sybil_step_needs_no_senders_and_validates_config() -> None:
    _, x = _cluster(7, 4, 7)
    out = DefaultAggregator(DefaultConfig(sybil_threshold=None))(x, torch.ones(7))
    assert out.scores["sybil"] == [1.0] * 7
    for bad in (
        {"norm_multiplier": 0.0},
        {"sybil_threshold": 1.0},
        {"tau_multiplier": -1.0},
        {"iterations": 0},
    ):
        with pytest.raises(ConfigError):
            DefaultConfig(**bad)  # type: ignore[arg-type]


def test_default_all_sybil_round_gives_zero() -> None:
    out = DefaultAggregator()(torch.ones(3, 4), torch.ones(3), _senders(3))
    assert out.excluded == (0, 1, 2) and float(out.vector.abs().sum()) == 0.0


# --- registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AggregatorName))
def test_registry_builds_every_rule_and_results_are_deterministic(name: AggregatorName) -> None:
    _, x = _cluster(11, 8, 8)
    ctx = RoundContext(senders=tuple(f"s{i}" for i in range(11)), reference=x.mean(dim=0))
    cfg = AggregatorConfig(f=2)
    a = build_aggregator(name, cfg)(x, torch.ones(11), ctx)
    b = build_aggregator(name, cfg)(x, torch.ones(11), ctx)
    assert torch.equal(a.vector, b.vector) and a.excluded == b.excluded
    assert float((a.vector - x.mean(dim=0)).norm()) < 0.2


def test_registry_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown aggregator"):
        build_aggregator("nope")  # type: ignore[arg-type]
    for bad in ({"f": -1}, {"trim_fraction": 0.5}, {"tau": 0.0}, {"cc_iterations": 0}):
        with pytest.raises(ConfigError):
            AggregatorConfig(**bad)  # type: ignore[arg-type]
    krum_rule = build_aggregator(AggregatorName.KRUM, AggregatorConfig(f=5))
    with pytest.raises(AggregationError, match="n > 2f"):
        krum_rule(torch.ones(10, 3), torch.ones(10))


def test_registry_trim_fraction_and_f() -> None:
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0]])
    by_f = build_aggregator(AggregatorName.TRIMMED_MEAN, AggregatorConfig(f=1))(x, torch.ones(5))
    by_fraction = build_aggregator(
        AggregatorName.TRIMMED_MEAN, AggregatorConfig(trim_fraction=0.2)
    )(x, torch.ones(5))
    assert float(by_f.vector) == pytest.approx(2.0) and float(by_fraction.vector) == pytest.approx(
        2.0
    )


def test_default_trims_a_few_coordinate_backdoor_and_drops_opposed_rows() -> None:
    g = torch.Generator().manual_seed(9)
    truth = torch.randn(40, generator=g)
    truth[:4] = 0.0  # coordinates honest training never touches (the trigger's pixels)
    honest = truth + 0.3 * torch.randn(16, 40, generator=g)
    honest[:, :4] = 0.0
    backdoor = truth.repeat(2, 1)
    backdoor[:, :4] = 3.0  # same main-task update plus the trigger's weights
    flipped = -honest[:2]
    x = torch.cat([honest, backdoor, flipped])
    out = DefaultAggregator()(x, torch.ones(20), _senders(20))
    assert float(out.vector[:4].abs().max()) == 0.0
    assert set(out.excluded) == {18, 19}  # the sign-flipped rows oppose the centre
    assert float((out.vector[4:] - truth[4:]).norm()) < 0.3 * float(truth.norm())


def test_default_caps_claimed_example_counts() -> None:
    """Claims weight the rows, each capped at ``weight_cap`` times the median claim, so a
    huge claim cannot buy its way out of the trim (uncapped, it would)."""
    x = torch.tensor([[1.0], [1.1], [0.9], [1.05], [0.95], [1.0], [1.02], [0.98], [1.0], [50.0]])
    w = torch.tensor([1.0] * 9 + [1000.0])
    base = {"sybil_threshold": None, "norm_multiplier": 100.0, "mixing": "none"}
    capped = DefaultAggregator(DefaultConfig(**base))(x, w)  # type: ignore[arg-type]
    assert 0.9 <= float(capped.vector) <= 1.1
    plain = DefaultAggregator(DefaultConfig(**base, use_weights=False))(x, w)  # type: ignore[arg-type]
    assert 0.9 <= float(plain.vector) <= 1.1
    uncapped = DefaultAggregator(DefaultConfig(**base, weight_cap=1e6))(x, w)  # type: ignore[arg-type]
    assert float(uncapped.vector) > 10.0  # a huge claimed count escapes a weight-share trim


def test_default_with_centered_clipping_centre() -> None:
    _, x = _cluster(12, 10, 10, spread=0.05)
    cfg = DefaultConfig(center=CenterRule.CENTERED_CLIPPING)
    out = DefaultAggregator(cfg)(torch.cat([x, 100 * x[:1]]), torch.ones(13), _senders(13))
    assert float((out.vector - x.mean(dim=0)).norm()) < 0.1
    assert len(out.scores["clip_scale"]) == 13


def test_default_gives_no_weight_to_free_riders() -> None:
    """Zero and noise-only rows (free-riders) are excluded instead of diluting the centre."""
    from deai.aggregation.base import RoundContext
    from deai.aggregation.default import DefaultAggregator

    gen = torch.Generator().manual_seed(0)
    honest = torch.ones(8, 50) + 0.1 * torch.randn(8, 50, generator=gen)
    riders = torch.cat([torch.zeros(1, 50), 1e-3 * torch.randn(1, 50, generator=gen)])
    stack = torch.cat([honest, riders])
    senders = tuple(f"p{i}" for i in range(10))
    agg = DefaultAggregator()(stack, torch.ones(10), RoundContext(senders=senders))
    assert set(agg.excluded) >= {8, 9}
    assert float((agg.vector - honest.mean(0)).abs().max()) < 0.2
