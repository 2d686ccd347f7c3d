"""The batched-matrix step of the built-in MLP computes the general vmapped step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deai.learning.batched import mlp_layout, mlp_step
from deai.learning.models import ModelConfig, ModelName, build_model
from deai.learning.params import FlatModel
from deai.learning.train import LocalTrainConfig, TrainRequest, _loss, _train_group


def _vmapped(model: FlatModel, mu: float):  # type: ignore[no-untyped-def]
    def loss_fn(flat, xb, yb, mb, anc):  # type: ignore[no-untyped-def]
        return _loss(model, flat, xb, yb, mb, anc, mu)

    return torch.func.vmap(torch.func.grad_and_value(loss_fn), randomness="different")


@pytest.mark.parametrize("hidden", [[], [64], [32, 16]])
@pytest.mark.parametrize("mu", [0.0, 0.05])
def test_mlp_step_equals_the_vmapped_step(hidden: list[int], mu: float) -> None:
    name = ModelName.LOGREG if not hidden else ModelName.MLP
    params = {} if not hidden else {"hidden": hidden}
    model = FlatModel(build_model(ModelConfig(name, params), (1, 8, 8), 10, seed=0))
    layout = mlp_layout(model)
    assert layout is not None
    g = torch.Generator().manual_seed(1)
    n, b = 7, 5
    theta = model.initial_vector().repeat(n, 1) + 0.1 * torch.randn(n, model.dim, generator=g)
    anchor = theta + 0.01 * torch.randn(n, model.dim, generator=g)
    xb = torch.rand(n, b, 1, 8, 8, generator=g)
    yb = torch.randint(0, 10, (n, b), generator=g)
    mb = (torch.rand(n, b, generator=g) > 0.3).float()
    mb[2] = 0.0  # a row that has run out of steps: zero loss, zero gradient
    want_g, want_l = _vmapped(model, mu)(theta, xb, yb, mb, anchor)
    got_g, got_l = mlp_step(layout, theta, xb, yb, mb, anchor, mu)
    assert got_g.shape == want_g.shape and got_l.shape == want_l.shape
    assert torch.allclose(got_g, want_g, atol=1e-6, rtol=1e-5)
    assert torch.allclose(got_l, want_l, atol=1e-6, rtol=1e-5)
    if mu == 0.0:
        assert torch.count_nonzero(got_g[2]) == 0


def test_only_the_plain_mlp_takes_the_batched_step() -> None:
    cnn = FlatModel(build_model(ModelConfig(ModelName.CNN), (1, 8, 8), 10, seed=0))
    assert mlp_layout(cnn) is None
    custom = FlatModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert mlp_layout(custom) is None  # not deai's MLP class: the general step
    mlp = build_model(ModelConfig(), (1, 8, 8), 10, seed=0)
    net = mlp.net
    assert isinstance(net, nn.Sequential)
    net[2] = nn.Tanh()  # changed structure: the general step
    assert mlp_layout(FlatModel(mlp)) is None


def test_a_provider_alone_trains_as_in_a_batch() -> None:
    """Batch composition changes nothing beyond float rounding: a request trained alone
    and inside a batch of differently sized requests."""
    model = FlatModel(build_model(ModelConfig(), (1, 8, 8), 10, seed=0))
    cfg = LocalTrainConfig(epochs=2, batch_size=8, lr=0.1, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    theta = model.initial_vector()
    reqs = [
        TrainRequest(
            theta,
            torch.rand(m, 1, 8, 8, generator=g),
            torch.randint(0, 10, (m,), generator=g),
            cfg,
            seed=i,
        )
        for i, m in enumerate([1, 3, 20, 7])
    ]
    together = _train_group(model, reqs, cfg, vectorize=True)
    for r, t in zip(reqs, together, strict=True):
        alone = _train_group(model, [r], cfg, vectorize=True)[0]
        general = _train_group(model, [r], cfg, vectorize=False)[0]  # plain autograd
        assert torch.allclose(alone.params, t.params, atol=1e-6)
        assert torch.allclose(general.params, t.params, atol=1e-6)
        assert alone.steps == t.steps and alone.samples == t.samples
