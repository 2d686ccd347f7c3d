"""DP-SGD noises every step it accounts, empty Poisson batches included (issue 14.5)."""

from __future__ import annotations

import math

import torch
from torch import nn

from deai.privacy.dp_sgd import DPSGDConfig, train_dp_sgd


def test_empty_poisson_batches_are_noised_like_every_other_step() -> None:
    """With all-zero inputs a bias-free linear model has zero gradients, so the trained
    weights move by the Gaussian noise alone: lr * z * C * sqrt(steps) / B per coordinate
    when every accounted step is noised. With n = 10 and q = 0.1 about 35 % of the Poisson
    batches are empty; skipping their step would leave only sqrt(0.65) = 0.81 of that."""
    n, d_in, d_out = 10, 64, 16
    x, y = torch.zeros(n, d_in), torch.arange(n) % d_out
    torch.manual_seed(0)
    model = nn.Linear(d_in, d_out, bias=False)
    z, clip, lr = 1.0, 1.0, 0.1
    cfg = DPSGDConfig(noise_multiplier=z, max_grad_norm=clip, batch_size=1, epochs=20, lr=lr)
    before = model.weight.detach().clone().reshape(-1)
    res = train_dp_sgd(model, x, y, cfg, seed=3)
    assert res.steps == 200 and res.empty_batches > 0.25 * res.steps  # empty batches happened
    moved = res.parameters - before
    expected = lr * z * clip * math.sqrt(res.steps) / (cfg.batch_size)  # B = q * n = 1
    ratio = float(moved.std()) / expected
    assert 0.93 < ratio < 1.07, ratio  # 1024 coordinates: ~2 % sampling error
