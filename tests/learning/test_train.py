import torch
from torch import nn

from deai.learning.data import DatasetName, load_dataset
from deai.learning.models import ModelConfig, ModelName, build_model
from deai.learning.params import FlatModel, vector_bytes, vector_from_bytes, vector_hash
from deai.learning.train import LocalTrainConfig, TrainRequest, evaluate, train_local

SPLITS = load_dataset(DatasetName.DIGITS, seed=0)


def _requests(model: FlatModel, n: int, cfg: LocalTrainConfig) -> list[TrainRequest]:
    theta = model.initial_vector()
    return [
        TrainRequest(
            theta,
            SPLITS.train.x[i * 40 : (i + 1) * 40 + i],
            SPLITS.train.y[i * 40 : (i + 1) * 40 + i],
            cfg,
            seed=i,
        )
        for i in range(n)
    ]


def test_batched_training_equals_one_by_one() -> None:
    model = FlatModel(build_model(ModelConfig(), (1, 8, 8), 10, seed=0))
    cfg = LocalTrainConfig(epochs=2, batch_size=16, lr=0.1, momentum=0.5, prox_mu=0.01)
    reqs = _requests(model, 5, cfg)  # different sizes: masking must be exact
    batched = train_local(model, reqs)
    for r, b in zip(reqs, batched, strict=True):
        single = train_local(model, [r])[0]
        assert torch.allclose(single.params, b.params, atol=1e-5)
        assert single.steps == b.steps and single.samples == b.samples


def test_training_reduces_loss_and_is_deterministic() -> None:
    model = FlatModel(build_model(ModelConfig(name=ModelName.CNN), (1, 8, 8), 10, seed=0))
    theta = model.initial_vector()
    req = TrainRequest(
        theta,
        SPLITS.train.x[:300],
        SPLITS.train.y[:300],
        LocalTrainConfig(epochs=3, batch_size=32, lr=0.1),
        seed=1,
    )
    a, b = train_local(model, [req])[0], train_local(model, [req])[0]
    assert torch.equal(a.params, b.params)
    assert evaluate(model, a.params, SPLITS.test)[0] < evaluate(model, theta, SPLITS.test)[0]


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_any_module_works_even_when_not_vmappable() -> None:
    torch.manual_seed(0)
    model = FlatModel(WithBatchNorm())
    res = train_local(model, _requests(model, 3, LocalTrainConfig(steps=5, batch_size=8)))
    assert len(res) == 3 and all(torch.isfinite(r.params).all() for r in res)


def test_flat_vector_roundtrip_and_hash() -> None:
    v = torch.randn(1000)
    assert torch.equal(vector_from_bytes(vector_bytes(v), 1000), v)
    assert vector_hash(v) == vector_hash(v.clone()) != vector_hash(v + 1e-3)
