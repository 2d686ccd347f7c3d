from __future__ import annotations

import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import VerificationError
from deai.verification.determinism import (
    HashAlgo,
    canonical_bytes,
    deterministic,
    from_canonical_bytes,
    tensor_hash,
)
from deai.verification.tasks import ExecutionEnv, InferenceTask, forward

from .conftest import SPEC


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=24),
    st.sampled_from([(-1,), (2, -1), (1, 1, -1)]),
)
def test_canonical_roundtrip(values: list[float], shape: tuple[int, ...]) -> None:
    n = len(values) - len(values) % 2
    t = torch.tensor(values[:n], dtype=torch.float32).reshape(shape) if n else torch.zeros(0)
    back = from_canonical_bytes(canonical_bytes(t))
    assert back.shape == t.shape and back.dtype == t.dtype
    assert torch.equal(torch.nan_to_num(back, nan=7.0), torch.nan_to_num(t + 0.0, nan=7.0))


def test_signed_zero_and_nan_payloads_fold() -> None:
    a = torch.tensor([0.0, float("nan"), 1.0])
    nan_bits = struct.unpack("<f", struct.pack("<I", 0x7FC00001))[0]  # a NaN with a payload
    b = torch.tensor([-0.0, nan_bits, 1.0])
    assert canonical_bytes(a) == canonical_bytes(b)
    assert tensor_hash(a) == tensor_hash(b)
    assert tensor_hash(a, HashAlgo.SHA256) != tensor_hash(a, HashAlgo.KECCAK256)


def test_header_binds_dtype_and_shape() -> None:
    t = torch.arange(6, dtype=torch.float32)
    hashes = {tensor_hash(t), tensor_hash(t.reshape(2, 3)), tensor_hash(t.to(torch.float64))}
    assert len(hashes) == 3


@pytest.mark.parametrize("cut", [0, 5, 12, 20, -1])
def test_malformed_bytes_rejected(cut: int) -> None:
    data = canonical_bytes(torch.ones(2, 3))
    with pytest.raises(VerificationError):
        from_canonical_bytes(data[:cut])
    with pytest.raises(VerificationError):
        from_canonical_bytes(data + b"\x00")


def test_deterministic_restores_settings() -> None:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with deterministic(seed=3, threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.rand(3)
    with deterministic(seed=3, threads=1):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_threads_agree_bit_for_bit_on_the_same_batch(
    trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    task = InferenceTask(SPEC, trained, digits[0][:64])
    model = SPEC.build(trained)
    outs = []
    for threads in (1, 2):
        with deterministic(0, threads):
            outs.append(forward(model, task.inputs, ExecutionEnv(threads)))
    assert tensor_hash(outs[0]) == tensor_hash(outs[1])


def test_batch_split_can_break_bit_exactness(
    trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Documents why the tolerant path exists: one-row batches take another GEMM path."""
    model = SPEC.build(trained)
    x = digits[0][:64]
    full = forward(model, x, ExecutionEnv())
    rows = forward(model, x, ExecutionEnv(microbatch=1))
    assert float((full - rows).abs().max()) < 1e-4  # close, and often not bit-equal
