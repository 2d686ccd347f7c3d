"""Accounting equals Opacus' own accountant; the budget is never exceeded; DP-FedAvg."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

from deai.errors import BudgetExhausted, ConfigError
from deai.privacy.accounting import (
    AccountantKind,
    PrivacyAccountant,
    PrivacyBudget,
    calibrate_noise,
)
from deai.privacy.dp_fedavg import (
    AdaptiveClip,
    AdaptiveClipConfig,
    DPFedAvgConfig,
    NoisePlacement,
    client_noise_std,
    clip_update,
    dp_fedavg_aggregate,
    server_noise_std,
)

charges = st.lists(
    st.tuples(
        st.sampled_from([0.6, 1.0, 1.7, 4.0]),
        st.sampled_from([0.01, 0.05, 1.0]),  # Opacus is slow at large fractional rates
        st.integers(1, 200),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=12, deadline=None)
@given(schedule=charges, delta=st.sampled_from([1e-5, 1e-3]))
def test_rdp_epsilon_equals_opacus(schedule: list[tuple[float, float, int]], delta: float) -> None:
    ours = PrivacyAccountant(AccountantKind.RDP)
    theirs = RDPAccountant()
    for z, q, steps in schedule:
        ours.step(z, q, steps)
        for _ in range(steps):
            theirs.step(noise_multiplier=z, sample_rate=q)
    assert ours.history == tuple(theirs.history)
    assert ours.epsilon(delta) == theirs.get_epsilon(delta=delta)


def test_prv_epsilon_equals_opacus() -> None:
    ours = PrivacyAccountant(AccountantKind.PRV)
    theirs = PRVAccountant()
    for z, q, steps in [(1.1, 0.02, 50), (1.1, 0.02, 30), (2.0, 0.1, 20)]:
        ours.step(z, q, steps)
        for _ in range(steps):
            theirs.step(noise_multiplier=z, sample_rate=q)
    assert ours.epsilon(1e-5) == theirs.get_epsilon(delta=1e-5)
    # PRV is tighter than RDP on the same schedule
    rdp = PrivacyAccountant(AccountantKind.RDP)
    for entry in ours.history:
        rdp.step(*entry)
    assert ours.epsilon(1e-5) < rdp.epsilon(1e-5)


@settings(max_examples=5, deadline=None)
@given(
    eps=st.floats(0.5, 4.0),
    z=st.floats(0.8, 1.5),
    q=st.floats(0.02, 0.05),
)
def test_budget_is_never_exceeded(eps: float, z: float, q: float) -> None:
    budget = PrivacyBudget(eps, 1e-5)
    acc = PrivacyAccountant()
    trace: list[float] = []
    with pytest.raises(BudgetExhausted, match="budget exhausted"):
        for _ in range(2000):
            trace.append(acc.charge(budget, z, q, steps=200))
    assert all(e <= eps for e in trace)
    assert trace == sorted(trace)
    before = acc.history
    assert acc.would_exceed(budget, z, q, 200)
    with pytest.raises(BudgetExhausted):
        acc.charge(budget, z, q, 200)
    assert acc.history == before  # a refused charge leaves no trace


@settings(max_examples=3, deadline=None)
@given(eps=st.floats(1.0, 10.0), q=st.floats(0.005, 0.05), steps=st.integers(10, 500))
def test_calibrated_noise_never_overshoots(eps: float, q: float, steps: int) -> None:
    budget = PrivacyBudget(eps, 1e-5)
    z = calibrate_noise(budget, q, steps)
    acc = PrivacyAccountant()
    acc.step(z, q, steps)
    assert acc.epsilon(budget.delta) <= eps
    assert eps - acc.epsilon(budget.delta) < 0.05  # and is not wastefully large


def test_bad_inputs_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        PrivacyBudget(0.0, 1e-5)
    with pytest.raises(ConfigError):
        PrivacyBudget(1.0, 1.0)
    with pytest.raises(ConfigError):
        PrivacyAccountant().step(1.0, 1.5)
    assert PrivacyAccountant().epsilon(1e-5) == 0.0


def test_clip_and_noise_placement() -> None:
    v = torch.tensor([3.0, 4.0])
    c = clip_update(v, 1.0)
    assert math.isclose(float(c.vector.norm()), 1.0, rel_tol=1e-6) and not c.unclipped
    assert clip_update(v, 10.0).unclipped
    cfg = DPFedAvgConfig(clip=1.0, noise_multiplier=2.0, expected_clients=4.0)
    assert server_noise_std(cfg) == 2.0 and client_noise_std(cfg) == 0.0
    dist = DPFedAvgConfig(1.0, 2.0, 4.0, NoisePlacement.DISTRIBUTED)
    assert client_noise_std(dist) == 1.0 and server_noise_std(dist) == 0.0
    # 4 distributed shares of variance 1 add up to the central variance 4
    assert math.isclose(4 * client_noise_std(dist) ** 2, server_noise_std(cfg) ** 2)
    local = DPFedAvgConfig(1.0, 2.0, 4.0, NoisePlacement.LOCAL)
    assert client_noise_std(local) == 2.0


def test_dp_fedavg_noise_has_the_stated_scale() -> None:
    g = torch.Generator().manual_seed(0)
    updates = torch.zeros(5, 20000)
    cfg = DPFedAvgConfig(clip=0.5, noise_multiplier=1.5, expected_clients=5.0)
    out = dp_fedavg_aggregate(updates, cfg, g)
    assert abs(float(out.std()) - 0.5 * 1.5 / 5.0) < 0.005
    big = torch.ones(5, 20000) * 10
    noiseless = DPFedAvgConfig(clip=0.5, noise_multiplier=0.0, expected_clients=5.0)
    assert math.isclose(float(dp_fedavg_aggregate(big, noiseless, g).norm()), 0.5, rel_tol=1e-4)


def test_adaptive_clip_tracks_the_median() -> None:
    g = torch.Generator().manual_seed(0)
    ac = AdaptiveClip(AdaptiveClipConfig(initial_clip=0.01, target_quantile=0.5, learning_rate=0.2))
    norms = [float(x) for x in torch.linspace(1.0, 3.0, 50)]  # median 2.0
    for _ in range(200):
        ac.update([n <= ac.clip for n in norms], expected_clients=50.0, generator=g)
    assert 1.8 < ac.clip < 2.2
    noisy = AdaptiveClip(AdaptiveClipConfig(count_noise_std=2.5))
    z = noisy.update_noise_multiplier(1.0)
    assert z > 1.0 and math.isclose(z**-2 + (2 * 2.5) ** -2, 1.0)
    with pytest.raises(ConfigError):
        AdaptiveClip(AdaptiveClipConfig(count_noise_std=0.4)).update_noise_multiplier(1.0)
