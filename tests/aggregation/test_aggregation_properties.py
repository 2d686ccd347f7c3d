"""Hypothesis tests of the robustness guarantees each rule claims (issue 4 acceptance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deai.aggregation import (
    AggregatorConfig,
    AggregatorName,
    RoundContext,
    build_aggregator,
    geometric_median,
    krum,
    median,
    multi_krum,
    trimmed_mean,
    weighted_trimmed_mean,
)
from deai.errors import AggregationError

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-10.0, 10.0, allow_nan=False, width=32)
wild = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def _matrix(draw: st.DrawFn, rows: int, d: int, elements: st.SearchStrategy[float]) -> torch.Tensor:
    return torch.from_numpy(draw(hnp.arrays(np.float32, (rows, d), elements=elements)))


@st.composite
def honest_and_attackers(
    draw: st.DrawFn, max_attackers_of: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(honest [h, d], attackers [b, d], trim) with b <= trim and 2 trim < n."""
    d = draw(st.integers(1, 20))
    n = draw(st.integers(1, 30))
    trim = draw(st.integers(0, (n - 1) // 2))
    b = (
        draw(st.integers(0, trim))
        if max_attackers_of == "trim"
        else draw(st.integers(0, (n - 1) // 2))
    )
    honest = _matrix(draw, n - b, d, finite)
    attackers = _matrix(draw, b, d, wild)
    return honest, attackers, trim


def _shuffled(draw: st.DrawFn, x: torch.Tensor) -> torch.Tensor:
    perm = draw(st.permutations(list(range(x.shape[0]))))
    return x[torch.tensor(perm, dtype=torch.long)] if x.shape[0] else x


@SETTINGS
@given(data=st.data())
def test_median_stays_in_honest_coordinate_range(data: st.DataObject) -> None:
    honest, attackers, _ = data.draw(honest_and_attackers("half"))
    x = _shuffled(data.draw, torch.cat([honest, attackers]))
    v = median(x, torch.ones(x.shape[0])).vector
    assert bool((v >= honest.min(dim=0).values).all() and (v <= honest.max(dim=0).values).all())


@SETTINGS
@given(data=st.data())
def test_trimmed_mean_stays_in_honest_coordinate_range(data: st.DataObject) -> None:
    honest, attackers, trim = data.draw(honest_and_attackers("trim"))
    x = _shuffled(data.draw, torch.cat([honest, attackers]))
    v = trimmed_mean(x, torch.ones(x.shape[0]), trim=trim).vector
    assert bool((v >= honest.min(dim=0).values).all() and (v <= honest.max(dim=0).values).all())


@SETTINGS
@given(data=st.data())
def test_weighted_trimmed_mean_generalises_the_trimmed_mean(data: st.DataObject) -> None:
    honest, attackers, trim = data.draw(honest_and_attackers("trim"))
    x = _shuffled(data.draw, torch.cat([honest, attackers]))
    n = x.shape[0]
    plain = trimmed_mean(x, torch.ones(n), trim=trim).vector.double()
    weighted = weighted_trimmed_mean(x, torch.ones(n), trim / n)
    assert torch.allclose(weighted, plain, rtol=1e-5, atol=1e-6 * (1 + float(x.abs().max())))
    # rows of weight zero have no say at all
    padded = torch.cat([x, torch.full((3, x.shape[1]), 1e6)])
    w = torch.cat([torch.ones(n), torch.zeros(3)])
    assert torch.allclose(weighted_trimmed_mean(padded, w, trim / n), weighted)


@st.composite
def clustered_krum_case(draw: st.DrawFn) -> tuple[torch.Tensor, set[int], int]:
    """Honest rows in a cube of half-side 1 around a centre; f < (n - 2) / 2 attackers at
    least ``R (1 + 2 sqrt(n)) + 1`` away (R the cube's radius), colluding or not."""
    d = draw(st.integers(1, 20))
    n = draw(st.integers(3, 30))
    f = draw(st.integers(0, (n - 3) // 2))
    centre = _matrix(draw, 1, d, finite)[0]
    honest = centre + _matrix(draw, n - f, d, st.floats(-1.0, 1.0, width=32))
    radius = math.sqrt(d)
    far = radius * (1 + 2 * math.sqrt(n)) + 1
    collude = draw(st.booleans())
    rows = []
    for i in range(f):
        if i == 0 or not collude:
            direction = _matrix(draw, 1, d, st.floats(-1.0, 1.0, width=32))[0]
            assume(float(direction.norm()) > 1e-3)
            extra = draw(st.floats(0.0, 1e4))
            point = centre + direction / direction.norm() * (far + extra)
        rows.append(point)
    x = torch.cat([honest, torch.stack(rows)]) if rows else honest
    perm = torch.tensor(draw(st.permutations(list(range(n)))), dtype=torch.long)
    attackers = {int(j) for j in torch.nonzero(perm >= n - f).flatten()}
    return x[perm], attackers, f


@SETTINGS
@given(case=clustered_krum_case())
def test_krum_picks_an_honest_row(case: tuple[torch.Tensor, set[int], int]) -> None:
    x, attackers, f = case
    n = x.shape[0]
    result = krum(x, torch.ones(n), f=f)
    (chosen,) = set(range(n)) - set(result.excluded)
    assert chosen not in attackers
    assert torch.equal(result.vector, x[chosen])


@SETTINGS
@given(case=clustered_krum_case())
def test_multi_krum_keeps_exactly_the_honest_rows(case: tuple[torch.Tensor, set[int], int]) -> None:
    x, attackers, f = case
    result = multi_krum(x, torch.ones(x.shape[0]), f=f)
    assert set(result.excluded) == attackers


@SETTINGS
@given(data=st.data())
def test_geometric_median_is_bounded_under_a_minority_of_arbitrary_rows(
    data: st.DataObject,
) -> None:
    """If ``h > n / 2`` rows lie within ``r`` of ``z``, the geometric median lies within
    ``2 h r / (2 h - n)`` of ``z`` (Lopuhaa & Rousseeuw 1991), wherever the others are. The
    solver is iterative and smooths distances below ``nu = 1e-6`` (rows that close to the
    estimate weigh as if ``nu`` away), so we allow ``nu`` absolute plus a relative error of
    1e-6 of the data's scale."""
    d = data.draw(st.integers(1, 20))
    n = data.draw(st.integers(1, 30))
    h = data.draw(st.integers(n // 2 + 1, n))
    honest = _matrix(data.draw, h, d, finite)
    outliers = _matrix(data.draw, n - h, d, wild)
    x = _shuffled(data.draw, torch.cat([honest, outliers]))
    z = honest.double().mean(dim=0)
    r = float((honest.double() - z).norm(dim=1).max())
    bound = 2 * h * r / (2 * h - n)
    v = geometric_median(x, torch.ones(n)).vector.double()
    scale = float(x.double().norm(dim=1).max())
    assert float((v - z).norm()) <= bound * (1 + 1e-6) + 1e-6 * scale + 1e-6


def _build(name: AggregatorName, n: int) -> tuple[object, RoundContext]:
    f = max(0, (n - 3) // 4)  # valid for every rule, Bulyan's n >= 4f + 3 included
    agg = build_aggregator(name, AggregatorConfig(f=f))
    return agg, RoundContext(senders=tuple(f"p{i}" for i in range(n)))


@pytest.mark.parametrize("name", list(AggregatorName))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_aggregator_rejects_non_finite_input(
    name: AggregatorName, data: st.DataObject
) -> None:
    d = data.draw(st.integers(1, 20))
    n = data.draw(st.integers(3, 30))
    x = _matrix(data.draw, n, d, finite)
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, d - 1))
    x[i, j] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    agg, ctx = _build(name, n)
    ctx = RoundContext(senders=ctx.senders, reference=torch.ones(d))
    with pytest.raises(AggregationError, match="non-finite"):
        agg(x, torch.ones(n), ctx)  # type: ignore[operator]


@pytest.mark.parametrize("name", list(AggregatorName))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_aggregator_returns_a_finite_vector_of_the_right_shape(
    name: AggregatorName, data: st.DataObject
) -> None:
    d = data.draw(st.integers(1, 20))
    n = data.draw(st.integers(3, 30))
    x = _matrix(data.draw, n, d, wild)
    agg, ctx = _build(name, n)
    ctx = RoundContext(senders=ctx.senders, reference=_matrix(data.draw, 1, d, finite)[0])
    out = agg(x, torch.ones(n), ctx)  # type: ignore[operator]
    assert out.vector.shape == (d,) and out.vector.dtype == torch.float32
    assert bool(torch.isfinite(out.vector).all())
    assert all(0 <= i < n for i in out.excluded) and len(set(out.excluded)) == len(out.excluded)
