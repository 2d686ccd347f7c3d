"""Error bounds, exact sizes and determinism of every codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.compression import (
    QSGD,
    CodecConfig,
    CodecName,
    ErrorFeedback,
    PowerSGD,
    RandomK,
    ScaledSign,
    SparseThenQuantize,
    StochasticUniform,
    TopK,
    ValueDType,
    build_codec,
)
from deai.compression.bits import index_bits, pack_uint, packed_size, unpack_uint

SHAPES = ((8, 6), (8,), (5, 2, 3), (4,))
DIM = sum(math.prod(s) for s in SHAPES)


def _vec(seed: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed)) * scale


@given(
    bits=st.integers(1, 32),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_bit_packing_roundtrips(bits: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=50))
    packed = pack_uint(np.array(values, dtype=np.uint64), bits)
    assert len(packed) == packed_size(len(values), bits)
    assert unpack_uint(packed, bits, len(values)).tolist() == values


def test_index_bits() -> None:
    assert [index_bits(d) for d in (1, 2, 3, 4, 5, 1024, 1025)] == [1, 1, 2, 2, 3, 10, 11]


@given(seed=st.integers(0, 10_000), dim=st.integers(1, 400), ratio=st.floats(0.001, 1.0))
@settings(max_examples=40, deadline=None)
def test_topk_keeps_largest_and_contracts(seed: int, dim: int, ratio: float) -> None:
    codec = TopK(ratio)
    x = _vec(seed, dim)
    enc = codec.encode(x)
    k = codec.k_for(dim)
    assert enc.nbytes == packed_size(k, index_bits(dim)) + 4 * k
    y = codec.decode(enc)
    kept = y != 0
    assert int(kept.sum()) <= k
    assert torch.equal(y[kept], x[kept])  # fp32 values are exact
    # Every dropped magnitude is at most every kept one.
    if kept.any() and (~kept).any():
        assert x[~kept].abs().max() <= x[kept].abs().min()
    assert (x - y).pow(2).sum() <= (1 - k / dim) * x.pow(2).sum() + 1e-6


def test_topk_fp16_values_are_close_and_half_the_bytes() -> None:
    x = _vec(1, 1000)
    c32, c16 = TopK(0.05), TopK(0.05, ValueDType.FP16)
    e32, e16 = c32.encode(x), c16.encode(x)
    assert e32.nbytes - e16.nbytes == 2 * c32.k_for(1000)
    torch.testing.assert_close(c16.decode(e16), c32.decode(e32), rtol=1e-3, atol=1e-3)


def test_randk_is_seeded_and_contractive_on_average() -> None:
    x = _vec(2, 500)
    a, b = RandomK(0.1, seed=7), RandomK(0.1, seed=7)
    assert a.encode(x).payload == b.encode(x).payload
    errs = []
    for _ in range(100):
        y = a.decode(a.encode(x))
        kept = y != 0
        assert torch.equal(y[kept], x[kept])
        errs.append(float((x - y).pow(2).sum() / x.pow(2).sum()))
    assert abs(np.mean(errs) - 0.9) < 0.02  # E = 1 - k/d


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("bucket", [0, 64])
def test_stochastic_uniform_error_bound_and_size(bits: int, bucket: int) -> None:
    codec = StochasticUniform(bits, bucket, seed=3)
    for seed in range(5):
        x = _vec(seed, 301, scale=10.0 ** (seed - 2))
        enc = codec.encode(x)
        nb = 1 if bucket == 0 else math.ceil(301 / bucket)
        assert enc.nbytes == 8 * nb + packed_size(301, bits)
        y = codec.decode(enc)
        b = 301 if bucket == 0 else bucket
        for start in range(0, 301, b):
            xs, ys = x[start : start + b], y[start : start + b]
            step = float(xs.max() - xs.min()) / (2**bits - 1)
            assert float((xs - ys).abs().max()) <= step * (1 + 1e-5) + 1e-6


@given(seed=st.integers(0, 1000), bits=st.sampled_from([1, 2, 4, 8]))
@settings(max_examples=25, deadline=None)
def test_stochastic_uniform_bound_property(seed: int, bits: int) -> None:
    x = _vec(seed, 97, scale=float(seed % 7 + 1))
    y = StochasticUniform(bits, seed=seed).decode(StochasticUniform(bits, seed=seed).encode(x))
    step = float(x.max() - x.min()) / (2**bits - 1)
    assert float((x - y).abs().max()) <= step * (1 + 1e-5) + 1e-6


@pytest.mark.parametrize("name", ["quantize", "qsgd"])
def test_randomized_quantizers_are_unbiased(name: str) -> None:
    x = _vec(4, 64)
    codec = StochasticUniform(2, seed=0) if name == "quantize" else QSGD(4, seed=0)
    mean = torch.stack([codec.decode(codec.encode(x)) for _ in range(3000)]).mean(0)
    spread = float(x.abs().max())
    assert float((mean - x).abs().max()) < 0.06 * spread


@pytest.mark.parametrize("levels", [1, 4, 16])
def test_qsgd_variance_bound(levels: int) -> None:
    x = _vec(5, 256)
    codec = QSGD(levels, seed=1)
    d = x.numel()
    bound = min(d / levels**2, math.sqrt(d) / levels) * float(x.pow(2).sum())
    errs = [float((codec.decode(codec.encode(x)) - x).pow(2).sum()) for _ in range(200)]
    assert np.mean(errs) <= bound
    assert codec.encode(x).nbytes == 4 + packed_size(d, 1 + levels.bit_length())


def test_scaled_sign_matches_definition() -> None:
    x = _vec(6, 100)
    codec = ScaledSign(bucket_size=30)
    y = codec.decode(codec.encode(x))
    assert codec.encode(x).nbytes == 4 * 4 + packed_size(100, 1)
    for start in range(0, 100, 30):
        xs, ys = x[start : start + 30], y[start : start + 30]
        scale = xs.abs().mean()
        expected = torch.where(xs >= 0, scale, -scale)
        torch.testing.assert_close(ys, expected)
        assert (xs - ys).pow(2).sum() <= xs.pow(2).sum() + 1e-6


def test_powersgd_exact_on_low_rank_and_contractive_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(8, 2, generator=gen), torch.randn(2, 6, generator=gen)
    low = torch.cat([(u @ v).reshape(-1), torch.randn(DIM - 48, generator=gen)])
    codec = PowerSGD(SHAPES, rank=2)
    y = codec.decode(codec.encode(low))
    torch.testing.assert_close(y[:48], low[:48], rtol=1e-4, atol=1e-4)
    # 1-D layers and the (5, 6) layer where rank 2 saves bytes: 1-D are exact.
    torch.testing.assert_close(y[48:56], low[48:56])
    torch.testing.assert_close(y[-4:], low[-4:])
    x = _vec(1, DIM)
    y = codec.decode(codec.encode(x))
    assert (x - y).pow(2).sum() <= x.pow(2).sum()
    expected = 4 * (2 * (8 + 6) + 8 + 2 * (5 + 6) + 4)
    assert codec.encode(x).nbytes == codec.payload_size() == expected


def test_powersgd_warm_start_improves_a_fixed_matrix() -> None:
    x = torch.randn(40, 30, generator=torch.Generator().manual_seed(2)).reshape(-1)
    codec = PowerSGD(((40, 30),), rank=3, seed=0)
    errs = [float((codec.decode(codec.encode(x)) - x).norm()) for _ in range(6)]
    assert errs[-1] < errs[0]


def test_sparse_then_quantize_bound_and_size() -> None:
    x = _vec(8, 2000)
    codec = SparseThenQuantize(TopK(0.01), StochasticUniform(4, seed=0))
    enc = codec.encode(x)
    k = 20
    assert enc.nbytes == packed_size(k, 11) + 8 + packed_size(k, 4)
    y = codec.decode(enc)
    kept_idx = torch.sort(torch.sort(x.abs(), descending=True, stable=True).indices[:k]).values
    vals = x[kept_idx]
    step = float(vals.max() - vals.min()) / 15
    assert float((y[kept_idx] - vals).abs().max()) <= step * (1 + 1e-5) + 1e-6
    mask = torch.ones(2000, dtype=torch.bool)
    mask[kept_idx] = False
    assert torch.count_nonzero(y[mask]) == 0


def test_error_feedback_residual_is_exactly_the_unsent_mass() -> None:
    codec = TopK(0.02)
    ef = ErrorFeedback(codec)
    gen = torch.Generator().manual_seed(9)
    sent, true = torch.zeros(300), torch.zeros(300)
    g_norm = 1.0
    delta = codec.k_for(300) / 300
    bound = math.sqrt(1 - delta) * g_norm / (1 - math.sqrt(1 - delta))
    for _ in range(200):
        g = torch.randn(300, generator=gen)
        g = g / g.norm() * g_norm
        true += g
        sent += ef.decode(ef.encode(g, sender="a"))
        r = ef.residual("a")
        assert r is not None
        torch.testing.assert_close(r, true - sent, rtol=1e-4, atol=1e-4)
        assert float(r.norm()) <= bound + 1e-4
    assert ef.residual("b") is None
    ef.reset("a")
    assert ef.residual("a") is None


@pytest.mark.parametrize("name", list(CodecName))
def test_registry_builds_every_codec_deterministically(name: CodecName) -> None:
    cfg = CodecConfig(ratio=0.1, bits=4, bucket_size=16, rank=2, shapes=SHAPES, seed=11)
    x = _vec(10, DIM)
    a, b = build_codec(name, cfg), build_codec(name, cfg)
    ea, eb = a.encode(x), b.encode(x)
    assert ea.payload == eb.payload
    assert ea.codec == a.name and ea.dim == DIM
    y = a.decode(ea)
    assert y.shape == (DIM,) and y.dtype == torch.float32
    assert bool(torch.isfinite(y).all())
    if name is not CodecName.IDENTITY:
        assert ea.nbytes < 4 * DIM
    # Error feedback works with every codec.
    ef = ErrorFeedback(build_codec(name, cfg))
    ef.encode(x)
    assert ef.residual() is not None
