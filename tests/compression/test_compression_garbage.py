"""Decoders reject malformed peer bytes with CodecError and never crash otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.compression import CodecConfig, CodecName, Encoded, TopK, build_codec
from deai.compression.bits import pack_uint
from deai.errors import CodecError, ConfigError

SHAPES = ((8, 6), (8,), (5, 2, 3), (4,))
DIM = sum(math.prod(s) for s in SHAPES)
CFG = CodecConfig(ratio=0.1, bits=4, bucket_size=16, shapes=SHAPES, seed=1)


@pytest.mark.parametrize("name", list(CodecName))
@given(payload=st.binary(max_size=400), dim=st.integers(-3, 10**12))
@settings(max_examples=60, deadline=None)
def test_random_bytes_never_crash(name: CodecName, payload: bytes, dim: int) -> None:
    codec = build_codec(name, CFG)
    try:
        out = codec.decode(Encoded(codec.name, dim, payload))
    except CodecError:
        return
    assert out.shape == (dim,)


@pytest.mark.parametrize("name", list(CodecName))
def test_truncated_or_padded_payloads_are_rejected(name: CodecName) -> None:
    codec = build_codec(name, CFG)
    enc = codec.encode(torch.randn(DIM, generator=torch.Generator().manual_seed(0)))
    for bad in (enc.payload[:-1], enc.payload + b"\x00", b""):
        with pytest.raises(CodecError):
            codec.decode(Encoded(enc.codec, enc.dim, bad))
    with pytest.raises(CodecError):
        codec.decode(Encoded("not-" + enc.codec, enc.dim, enc.payload))


def test_out_of_range_and_repeated_indices_are_rejected() -> None:
    codec = TopK(0.5)  # dim 6 -> k 3, 3-bit indices
    values = np.zeros(3, dtype="<f4").tobytes()
    with pytest.raises(CodecError, match="out of range"):
        codec.decode(Encoded("topk", 6, pack_uint(np.array([0, 1, 7]), 3) + values))
    with pytest.raises(CodecError, match="increasing"):
        codec.decode(Encoded("topk", 6, pack_uint(np.array([1, 1, 2]), 3) + values))


def test_nonfinite_and_negative_statistics_are_rejected() -> None:
    codec = build_codec(CodecName.QSGD, CodecConfig(levels=4))
    enc = codec.encode(torch.ones(10))
    for stat in (float("nan"), float("inf"), -1.0):
        bad = np.array([stat], dtype="<f4").tobytes() + enc.payload[4:]
        with pytest.raises(CodecError):
            codec.decode(Encoded(enc.codec, 10, bad))


def test_bad_configs_raise_config_error() -> None:
    for name, cfg in [
        (CodecName.TOPK, CodecConfig(ratio=0.0)),
        (CodecName.QUANTIZE, CodecConfig(bits=0)),
        (CodecName.QSGD, CodecConfig(levels=0)),
        (CodecName.POWERSGD, CodecConfig(shapes=())),
        (CodecName.POWERSGD, CodecConfig(shapes=((3, 3),), rank=0)),
        (CodecName.SIGN, CodecConfig(bucket_size=-1)),
    ]:
        with pytest.raises(ConfigError):
            build_codec(name, cfg)
    assert issubclass(ConfigError, ValueError)
