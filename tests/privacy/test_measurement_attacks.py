"""The attacks used as measurements: LiRA scoring, TPR at low FPR, intervals, and the
analytic first-layer inversion (exact through clipping, defeated by noise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deai.errors import ConfigError
from deai.privacy.inversion import analytic_first_layer, per_example_clipped_sum, recovered
from deai.privacy.mia import (
    balanced_split,
    lira_offline_scores,
    logit_confidence,
    mean_ci95,
    score_attack,
    tpr_at_fpr,
)


def test_lira_separates_what_the_references_cannot_explain() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(16, 400, generator=g) + torch.linspace(-3, 3, 400)  # per-example mean
    target = ref.mean(0) + 0.3 * torch.randn(400, generator=g)
    target[:200] += 1.0  # members: more confident than their OUT distribution predicts
    lira = score_attack(*lira_offline_scores(target, ref).split(200))
    loss_like = score_attack(target[:200], target[200:])  # ignores per-example difficulty
    assert lira.auc > 0.9 > loss_like.auc
    with pytest.raises(ConfigError):
        lira_offline_scores(target, ref[:1])


def test_tpr_at_fpr_and_intervals() -> None:
    labels = np.r_[np.ones(100), np.zeros(100)]
    scores = np.r_[np.arange(100) + 1000.0, np.arange(100)]  # perfectly separated
    assert tpr_at_fpr(labels, scores, 0.01) == 1.0
    assert tpr_at_fpr(labels, -scores, 0.01) == 0.0
    m, lo, hi = mean_ci95([0.5, 0.6, 0.7])
    assert m == pytest.approx(0.6) and lo < 0.5 and hi > 0.7
    assert (m - lo) == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)


def test_balanced_split_and_logit_confidence() -> None:
    y = np.repeat(np.arange(3), 10)
    mem, non, rest = balanced_split(y, 3, np.random.default_rng(0))
    assert sorted(np.bincount(y[mem])) == sorted(np.bincount(y[non])) == [3, 3, 3]
    assert len(set(mem) | set(non) | set(rest)) == 30 and not set(mem) & set(non)
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    x, lab = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    p = torch.softmax(model(x), 1)[0, 0].detach()
    assert float(logit_confidence(model, x, lab)[0]) == pytest.approx(float(torch.log(p / (1 - p))))


def test_analytic_attack_is_exact_through_clipping_and_fails_under_noise() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    x, y = torch.rand(1, 16), torch.tensor([2])
    g = per_example_clipped_sum(model, x, y, clip=0.01)  # clipped hard
    w, b = g[: 16 * 64].reshape(64, 16), g[16 * 64 : 16 * 64 + 64]
    k, best = recovered(x, analytic_first_layer(w, b, 64), 1e-8)
    assert k == 1 and float(best[0]) < 1e-10
    noisy = g + torch.randn(g.shape, generator=torch.Generator().manual_seed(1)) * 0.01
    w, b = noisy[: 16 * 64].reshape(64, 16), noisy[16 * 64 : 16 * 64 + 64]
    assert recovered(x, analytic_first_layer(w, b, 64), 0.01)[0] == 0
