"""Update-level attacks: the formulas of the papers, the gamma search, the entry point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deai.attacks import (
    AttackError,
    AttackName,
    AttackSpec,
    Perturbation,
    alie,
    alie_z_max,
    apply_update_attack,
    clones,
    data_attack,
    gamma_search,
    gaussian,
    ipm,
    min_max,
    min_sum,
    noise,
    perturbation_vector,
    sign_flip,
    stale,
    zero,
)
from deai.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _honest(m: int = 8, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    return torch.randn(d, generator=g) + 0.3 * torch.randn(m, d, generator=g)


def test_alie_z_max_follows_the_paper() -> None:
    # n = 50, f = 24: s = 26 - 24 = 2, z = Phi^-1(48 / 50) = 1.7507
    assert alie_z_max(50, 24) == pytest.approx(1.750686, abs=1e-6)
    # n = 20, f = 4: s = 11 - 4 = 7, z = Phi^-1(13 / 20)
    assert alie_z_max(20, 4) == pytest.approx(0.385320, abs=1e-6)
    with pytest.raises(ConfigError):
        alie_z_max(10, 6)  # s = 6 - 6 = 0


def test_alie_is_mean_minus_z_sigma() -> None:
    h = _honest()
    out = alie(h, 20, 4)
    expected = h.mean(dim=0) - alie_z_max(20, 4) * h.std(dim=0, correction=0)
    assert out.shape == (4, 12)
    assert torch.allclose(out, expected.repeat(4, 1))
    assert torch.allclose(alie(h, 20, 4, z=1.0)[0], h.mean(dim=0) - h.std(dim=0, correction=0))


def test_ipm_sign_flip_gaussian() -> None:
    h = _honest()
    assert torch.allclose(ipm(h, 0.5, k=2), (-0.5 * h.mean(dim=0)).repeat(2, 1))
    assert torch.equal(sign_flip(h[0], 3, 2.0), (-2.0 * h[0]).repeat(3, 1))
    a, b = gaussian(12, 3, 2.0, _gen(1)), gaussian(12, 3, 2.0, _gen(1))
    assert a.shape == (3, 12) and torch.equal(a, b)
    with pytest.raises(ConfigError):
        ipm(h, 0.0)
    with pytest.raises(AttackError):
        ipm(torch.zeros(0, 12), 0.1)


def _closed_form_min_max(h: torch.Tensor, p: torch.Tensor) -> float:
    """Largest gamma with max_i ||mu + gamma p - x_i||^2 <= max_ij ||x_i - x_j||^2 (roots of
    one quadratic per honest row)."""
    mu = h.mean(dim=0)
    r2 = float(torch.cdist(h, h).max() ** 2)
    a = float(p @ p)
    roots = []
    for x in h:
        b = 2 * float(p @ (mu - x))
        c = float((mu - x) @ (mu - x)) - r2
        roots.append((-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a))
    return min(roots)


def _closed_form_min_sum(h: torch.Tensor, p: torch.Tensor) -> float:
    """Sum of squared distances is m ||p||^2 gamma^2 + sum ||mu - x_i||^2 (cross term 0)."""
    mu = h.mean(dim=0)
    bound = float((torch.cdist(h, h) ** 2).sum(dim=1).max())
    base = float(((h - mu) ** 2).sum())
    return math.sqrt(max(bound - base, 0.0) / (h.shape[0] * float(p @ p)))


@settings(max_examples=40, deadline=None)
@given(
    h=hnp.arrays(
        np.float64,
        st.tuples(st.integers(2, 12), st.integers(1, 10)),
        elements=st.floats(-100, 100, allow_nan=False),
    ),
    kind=st.sampled_from(list(Perturbation)),
)
def test_min_max_and_min_sum_find_the_largest_feasible_gamma(
    h: np.ndarray, kind: Perturbation
) -> None:
    x = torch.from_numpy(h)
    p = perturbation_vector(x, kind)
    if float(p.norm()) < 1e-6:
        return  # no direction to push along: both attacks send the mean
    mu = x.mean(dim=0)
    for attack, closed in ((min_max, _closed_form_min_max), (min_sum, _closed_form_min_sum)):
        row = attack(x, 1, kind, tol=1e-9)[0]
        gamma = float((row - mu) @ p / (p @ p))
        expected = closed(x, p)
        assert gamma <= expected * (1 + 1e-6) + 1e-9  # feasible
        assert gamma >= expected * (1 - 1e-6) - 1e-6  # and (nearly) the largest


def test_gamma_search_edges() -> None:
    assert gamma_search(lambda g: g <= 0.0) == 0.0  # only zero is feasible: terminates
    assert gamma_search(lambda g: g <= 3.0) == pytest.approx(3.0, rel=1e-5)
    assert gamma_search(lambda g: g <= 12345.0) == pytest.approx(12345.0, rel=1e-5)  # > 2 * init
    assert gamma_search(lambda g: True) > 1e19  # zero perturbation: feasible everywhere
    with pytest.raises(ConfigError):
        gamma_search(lambda g: True, gamma_init=0.0)


def test_min_max_row_is_inside_the_honest_spread() -> None:
    h = _honest(10, 30, 3)
    row = min_max(h, 2)
    assert row.shape == (2, 30)
    assert float(torch.cdist(row[:1], h).max()) <= float(torch.cdist(h, h).max()) + 1e-4
    assert float((row[0] - h.mean(dim=0)).norm()) > 0.1  # and it really moved


def test_free_riders_and_clones() -> None:
    assert torch.equal(zero(5, 2), torch.zeros(2, 5))
    delta = torch.arange(5.0)
    assert torch.equal(stale(delta, 2), delta.repeat(2, 1))
    nz = noise(delta, 1e-3, _gen(2), k=3)
    assert nz.shape == (3, 5) and float((nz - delta).abs().max()) < 1e-2
    c = clones(delta, 4, 0.0, _gen())
    assert torch.equal(c, delta.repeat(4, 1))
    cj = clones(delta, 4, 0.1, _gen())
    assert cj.shape == (4, 5) and not torch.equal(cj[0], cj[1])
    with pytest.raises(ConfigError):
        clones(delta, 0, 0.0, _gen())


# --- the spec and the single entry point ------------------------------------------------


def test_attack_spec_validates_params() -> None:
    spec = AttackSpec(AttackName.IPM, {"eps": 2.0})
    assert spec.num("eps") == 2.0
    assert AttackSpec(AttackName.IPM).num("eps") == 0.1
    assert AttackSpec("alie").name is AttackName.ALIE  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no parameter"):
        AttackSpec(AttackName.IPM, {"epsilon": 2.0})
    with pytest.raises(ConfigError, match="number"):
        AttackSpec(AttackName.IPM, {"eps": "big"})
    with pytest.raises(ConfigError, match="one of"):
        AttackSpec(AttackName.MIN_MAX, {"perturbation": "sideways"})
    with pytest.raises(ConfigError, match="unknown attack"):
        AttackSpec("teleport")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        AttackSpec(AttackName.NONE, identities=0)
    with pytest.raises(TypeError):
        spec.params["eps"] = 3.0  # type: ignore[index]


@pytest.mark.parametrize("name", list(AttackName))
def test_every_attack_yields_one_row_per_identity(name: AttackName) -> None:
    h = _honest(8, 12)
    spec = AttackSpec(name, identities=3, jitter=0.01)

    def rule(rows: torch.Tensor) -> torch.Tensor:  # the adaptive attack's target
        return rows.median(dim=0).values

    kw = {"prev_global_delta": h[2], "aggregate": rule}
    out = apply_update_attack(spec, h[0], h[1:], 10, 2, _gen(5), **kw)
    again = apply_update_attack(spec, h[0], h[1:], 10, 2, _gen(5), **kw)
    assert out.shape == (3, 12) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all()) and torch.equal(out, again)


def test_entry_point_semantics() -> None:
    h = _honest(8, 12)
    own, prev = h[0], h[2]

    def one(spec: AttackSpec) -> torch.Tensor:
        return apply_update_attack(spec, own, h[1:], 10, 2, _gen(), prev)[0]

    assert torch.equal(one(AttackSpec(AttackName.NONE)), own)
    assert torch.equal(one(AttackSpec(AttackName.LABEL_FLIP)), own)
    assert torch.allclose(one(AttackSpec(AttackName.BACKDOOR)), 5.0 * own)  # n / f = 10 / 2
    assert torch.allclose(one(AttackSpec(AttackName.BACKDOOR, {"boost": 3.0})), 3.0 * own)
    assert torch.equal(one(AttackSpec(AttackName.SIGN_FLIP)), -own)
    assert torch.allclose(one(AttackSpec(AttackName.ALIE)), alie(h[1:], 10, 2)[0])
    assert torch.equal(one(AttackSpec(AttackName.FREE_RIDER_STALE)), prev)
    assert torch.equal(one(AttackSpec(AttackName.FREE_RIDER_ZERO)), torch.zeros(12))
    first_round = apply_update_attack(
        AttackSpec(AttackName.FREE_RIDER_STALE), own, h[1:], 10, 2, _gen()
    )
    assert torch.equal(first_round[0], torch.zeros(12))
    with pytest.raises(AttackError):
        apply_update_attack(AttackSpec(AttackName.ALIE), own, h[:0], 10, 2, _gen())
    with pytest.raises(AttackError):
        apply_update_attack(AttackSpec(AttackName.NONE), h, h, 10, 2, _gen())
    with pytest.raises(ConfigError):
        apply_update_attack(AttackSpec(AttackName.NONE), own, h, 2, 3, _gen())


def test_data_attack_is_none_for_update_level_attacks() -> None:
    for name in AttackName:
        has_data = data_attack(AttackSpec(name)) is not None
        assert has_data == (name in (AttackName.LABEL_FLIP, AttackName.BACKDOOR))
