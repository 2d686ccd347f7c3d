"""The simulator's fast paths compute exactly what the plain ones do.

- the trainer's index plan (every request's batch schedule built per example count)
  equals :func:`batch_schedule` request by request, mask and counts included;
- header lengths kept by value give the encoded length, floats and bools included;
- the one-pass finiteness check of an aggregation stack equals ``isfinite().all()``;
- canonical vector bytes are the same bytes for every dtype and layout;
- the shared local-training config equals the one built afresh;
- a task's hash taken from its bytes is the hash of the vector they decode to;
- the in-place SGD step and the MLP's in-place layer gradients compute what the
  out-of-place formulas do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from deai.aggregation.base import _all_finite
from deai.job.spec import AlgorithmSpec
from deai.learning.algorithms import AlgorithmName
from deai.learning.params import bytes_hash, vector_bytes, vector_from_bytes, vector_hash
from deai.learning.train import (
    LocalTrainConfig,
    Optimizer,
    TrainRequest,
    _index_plan,
    _StackedOptimizer,
    batch_schedule,
)
from deai.node.messages import Message, encode
from deai.sim.wire import wire_size


@pytest.mark.parametrize(
    "config",
    [
        LocalTrainConfig(epochs=1, batch_size=32),
        LocalTrainConfig(epochs=3, batch_size=5),
        LocalTrainConfig(steps=7, batch_size=4),
        LocalTrainConfig(steps=3, batch_size=64),
    ],
)
def test_index_plan_is_every_requests_batch_schedule(config: LocalTrainConfig) -> None:
    sizes = [1, 5, 40, 3, 17, 64, 2, 5, 1, 33]
    reqs = [
        TrainRequest(torch.zeros(3), torch.zeros(m, 2), torch.zeros(m), config, seed=100 + i)
        for i, m in enumerate(sizes)
    ]
    idx, mask, steps, samples = _index_plan(reqs, config)
    for i, (r, m) in enumerate(zip(reqs, sizes, strict=True)):
        sched = batch_schedule(m, config, r.seed)
        assert steps[i] == len(sched)
        assert samples[i] == sum(len(b) for b in sched)
        for s in range(idx.shape[1]):
            b = sched[s] if s < len(sched) else torch.zeros(0, dtype=torch.long)
            want = torch.zeros(idx.shape[2], dtype=torch.long)
            want[: len(b)] = b
            assert torch.equal(idx[i, s], want)
            assert mask[i, s].sum().item() == len(b)
            assert torch.all(mask[i, s, : len(b)] == 1)


@dataclass(frozen=True)
class _Probe(Message):
    kind: ClassVar[str] = "probe"
    x: float
    n: int
    blob: bytes


def test_header_lengths_kept_by_value_are_the_encoded_lengths() -> None:
    msgs = [
        _Probe("j", 0.0, 1, b"ab"),
        _Probe("j", -0.0, 1, b"ab"),  # equal to 0.0, one byte longer in JSON
        _Probe("j", 1.0, True, b"ab"),  # True == 1, but "true" != "1"
        _Probe("j", 1, 1, b"ab"),  # an int where a float is declared: "1", not "1.0"
        _Probe("j", float("nan"), 1, b"ab" * 9),
        _Probe("j\u00e9", 1e300, 10**20, b""),
    ]
    for m in msgs * 2:  # the second pass reads the kept lengths
        assert wire_size(m) == len(encode(m)), m


def test_one_pass_finiteness_check_equals_isfinite_all() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        x = torch.randn(4, 37, generator=g) * 10.0 ** (trial % 40)
        for k in range(trial % 4):
            x.view(-1)[(trial * 7 + k * 13) % x.numel()] = (
                float("nan"),
                float("inf"),
                float("-inf"),
                3.4e38,
            )[(trial + k) % 4]
        for dtype in (torch.float32, torch.float64, torch.float16):
            y = x.to(dtype)
            assert _all_finite(y) == bool(torch.isfinite(y).all())
            assert _all_finite(y.t()) == bool(torch.isfinite(y).all())


def test_vector_bytes_are_float32_little_endian_for_every_layout() -> None:
    base = torch.randn(4, 6)
    for v in (
        base.flatten(),
        base.t().flatten(),
        base[:, 1],  # strided
        base.double().flatten(),
        base.flatten().requires_grad_(True),
        base.half().flatten(),
    ):
        want = v.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        assert vector_bytes(v) == want


def test_shared_local_config_equals_a_fresh_one() -> None:
    for alg in (
        AlgorithmSpec(),
        AlgorithmSpec(prox_mu=0.1, lr=0.05, epochs=2, momentum=0.5),
        AlgorithmSpec(name=AlgorithmName.PARALLEL_SGD, clip_norm=1.0),
        AlgorithmSpec(optimizer=Optimizer.ADAMW, weight_decay=0.01, steps=5),
    ):
        cfg = alg.local()
        assert cfg is alg.local()  # shared
        if alg.name is AlgorithmName.PARALLEL_SGD:  # one raw gradient, clipped
            assert (cfg.steps, cfg.lr, cfg.optimizer) == (1, 1.0, Optimizer.SGD)
        else:
            assert (cfg.epochs, cfg.steps, cfg.lr, cfg.momentum, cfg.prox_mu) == (
                alg.epochs,
                alg.steps,
                alg.lr,
                alg.momentum,
                alg.prox_mu,
            )
            assert (cfg.optimizer, cfg.weight_decay) == (alg.optimizer, alg.weight_decay)
        assert (cfg.batch_size, cfg.clip_norm) == (alg.batch_size, alg.clip_norm)
        assert alg.local() is alg.local()  # one shared frozen config
    assert AlgorithmSpec(lr=0.1).local() != AlgorithmSpec(lr=0.2).local()


def test_a_task_hash_from_its_bytes_is_the_hash_of_the_decoded_vector() -> None:
    g = torch.Generator().manual_seed(1)
    blobs = [
        vector_bytes(torch.randn(50, generator=g)),
        vector_bytes(torch.tensor([float("nan"), float("inf"), -0.0, 0.0, 1e-45])),
        bytes(range(256)) * 4,  # arbitrary peer bytes: NaN payloads, denormals
        b"",
    ]
    for blob in blobs * 2:  # the second pass reads the kept digests
        want = hashlib.sha256(vector_bytes(vector_from_bytes(blob, len(blob) // 4))).hexdigest()
        assert bytes_hash(blob) == want == vector_hash(vector_from_bytes(blob, len(blob) // 4))
    assert bytes_hash(blobs[0]) != bytes_hash(blobs[0][:-4] + b"\x00\x00\x80\x7f")


def test_in_place_sgd_step_equals_the_out_of_place_formula() -> None:
    g = torch.Generator().manual_seed(2)
    cfg = LocalTrainConfig(lr=0.1)
    theta = torch.randn(6, 40, generator=g)
    grads = torch.randn(6, 40, generator=g) * 10.0 ** torch.arange(-3, 3)[:, None]
    active = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    want = theta - cfg.lr * active * grads
    got = _StackedOptimizer(cfg, theta).step(theta.clone(), grads.clone(), active)
    assert torch.equal(got, want)
    assert torch.equal(got[1], theta[1]) and torch.equal(got[4], theta[4])  # inactive rows


def test_mlp_layer_gradients_written_in_place_equal_concatenated_products() -> None:
    from deai.learning.batched import mlp_layout, mlp_step
    from deai.learning.models import ModelConfig, build_model
    from deai.learning.params import FlatModel

    model = FlatModel(build_model(ModelConfig("mlp", {"hidden": [16, 8]}), (1, 4, 4), 5, 0))
    layout = mlp_layout(model)
    assert layout is not None
    g = torch.Generator().manual_seed(3)
    n, b = 7, 5
    theta = torch.randn(n, model.dim, generator=g) * 0.3
    xb = torch.randn(n, b, 1, 4, 4, generator=g)
    yb = torch.randint(0, 5, (n, b), generator=g)
    mb = (torch.rand(n, b, generator=g) > 0.2).float()
    grads, losses = mlp_step(layout, theta, xb, yb, mb, theta[:, :1], 0.0)
    for i in range(n):  # each row against plain autograd on that row alone
        flat = theta[i].clone().requires_grad_(True)
        logits = model.forward(flat, xb[i])
        per = torch.nn.functional.cross_entropy(logits, yb[i], reduction="none")
        loss = (per * mb[i]).sum() / mb[i].sum().clamp_min(1.0)
        (want,) = torch.autograd.grad(loss, flat)
        torch.testing.assert_close(grads[i], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[i], loss.detach(), rtol=1e-5, atol=1e-6)
