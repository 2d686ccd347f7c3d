"""DP-SGD through Opacus, the attacks as measurements, and group-wise secure aggregation."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

from deai.aggregation.base import Aggregate, RoundContext
from deai.privacy.accounting import PrivacyAccountant
from deai.privacy.dp_fedavg import clip_update
from deai.privacy.dp_sgd import DPSGDConfig, train_dp_sgd
from deai.privacy.groupwise import GroupwiseConfig, groupwise_aggregate, random_groups
from deai.privacy.measure import (
    DLGConfig,
    dlg_attack,
    gradient_of,
    membership_auc,
    reconstruction_mse,
)


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:n] / 16.0, dtype=torch.float32), torch.tensor(y[:n])


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10))


def test_dp_sgd_is_deterministic_and_accounted() -> None:
    x, y = _digits(300)
    model = _mlp(0)
    before = torch.nn.utils.parameters_to_vector(model.parameters()).clone()
    cfg = DPSGDConfig(noise_multiplier=1.1, max_grad_norm=1.0, batch_size=30, epochs=2, lr=0.5)
    a = train_dp_sgd(model, x, y, cfg, seed=7)
    b = train_dp_sgd(model, x, y, cfg, seed=7)
    c = train_dp_sgd(model, x, y, cfg, seed=8)
    assert torch.equal(a.parameters, b.parameters) and not torch.equal(a.parameters, c.parameters)
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()), before)
    assert a.steps == 20 and abs(a.sample_rate - 0.1) < 1e-9
    acc = PrivacyAccountant()
    acc.step(a.noise_multiplier, a.sample_rate, a.steps)
    assert 0 < acc.epsilon(1e-5) < 10


def test_membership_auc_detects_overfitting() -> None:
    x, y = _digits(400)
    model = _mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):  # overfit 50 members
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:50]), y[:50]).backward()
        opt.step()
    auc = membership_auc(model, (x[:50], y[:50]), (x[200:300], y[200:300]))
    assert auc > 0.7
    fresh = _mlp(1)  # an untrained model leaks nothing about members
    assert abs(membership_auc(fresh, (x[:50], y[:50]), (x[200:300], y[200:300])) - 0.5) < 0.15


def test_dlg_reconstructs_a_clean_gradient_but_not_a_noisy_or_summed_one() -> None:
    x, y = _digits(8)
    model = _mlp(0)
    cfg = DLGConfig(iterations=8)
    clean = dlg_attack(model, gradient_of(model, x[:1], y[:1]), (64,), cfg)
    assert clean.label == int(y[0])
    assert reconstruction_mse(clean.x, x[0]) < 1e-3
    grads = gradient_of(model, x[:1], y[:1])
    flat = clip_update(torch.cat([g.reshape(-1) for g in grads]), 0.5).vector
    noisy = flat + torch.randn(flat.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    parts, i = [], 0
    for g in grads:
        parts.append(noisy[i : i + g.numel()].reshape(g.shape))
        i += g.numel()
    assert reconstruction_mse(dlg_attack(model, parts, (64,), cfg).x, x[0]) > 0.05
    summed = [g * 8 for g in gradient_of(model, x, y)]
    rec = dlg_attack(model, summed, (64,), cfg).x
    assert min(reconstruction_mse(rec, x[i]) for i in range(8)) > 0.05


def _median(
    updates: torch.Tensor, weights: torch.Tensor, ctx: RoundContext | None = None
) -> Aggregate:
    return Aggregate(updates.median(dim=0).values)


def test_groupwise_secure_aggregation_with_a_robust_rule() -> None:
    groups = random_groups(10, 3, seed=1)
    assert sorted(i for g in groups for i in g) == list(range(10)) and len(groups) == 3
    honest = torch.full((9, 6), 0.1)
    updates = torch.cat([honest, torch.full((1, 6), 0.9)])  # one attacker
    res = groupwise_aggregate(updates, _median, GroupwiseConfig(group_size=3, seed=1, clip=1.0))
    assert res.group_means.shape == (3, 6)
    # the secure sums are exact up to fixed-point rounding
    plain = torch.stack([updates[list(g)].mean(0) for g in res.groups])
    assert torch.allclose(res.group_means, plain, atol=1e-4)
    # the attacker spoils one group of three; the median over groups ignores it
    assert torch.allclose(res.aggregate.vector, torch.full((6,), 0.1), atol=1e-4)
