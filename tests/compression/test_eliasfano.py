"""Top-k with Elias-Fano coded indices: the same coordinates as plain top-k in fewer
bytes, an exact payload length, and strict checks on what a peer sends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deai.compression import CodecConfig, CodecName, Encoded, TopKEliasFano, build_codec
from deai.errors import CodecError


def _pair(ratio: float) -> tuple[object, object]:
    cfg = CodecConfig(ratio=ratio, bits=4, seed=3)
    return (
        build_codec(CodecName.TOPK_QUANTIZE, cfg),
        build_codec(CodecName.TOPK_ELIASFANO_QUANTIZE, cfg),
    )


@pytest.mark.parametrize(
    ("dim", "ratio"), [(1, 0.5), (2, 1.0), (7, 0.3), (100, 1.0), (1000, 0.01), (76_810, 0.003)]
)
def test_decodes_exactly_what_plain_topk_decodes(dim: int, ratio: float) -> None:
    plain, ef = _pair(ratio)
    x = torch.randn(dim, generator=torch.Generator().manual_seed(dim))
    a, b = plain.encode(x), ef.encode(x)  # type: ignore[attr-defined]
    torch.testing.assert_close(ef.decode(b), plain.decode(a), rtol=0, atol=0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("dim", "ratio"), [(76_810, 0.003), (85_002, 0.002), (10_000, 0.01)])
def test_index_block_has_the_elias_fano_size_and_beats_plain_packing(
    dim: int, ratio: float
) -> None:
    plain, ef = _pair(ratio)
    x = torch.randn(dim, generator=torch.Generator().manual_seed(1))
    a, b = plain.encode(x), ef.encode(x)  # type: ignore[attr-defined]
    k = math.ceil(ratio * dim)
    low = math.floor(math.log2(dim // k))
    index_bytes = math.ceil((k + ((dim - 1) >> low) + 1) / 8) + math.ceil(k * low / 8)
    values = len(a.payload) - math.ceil(k * math.ceil(math.log2(dim)) / 8)
    assert len(b.payload) == index_bytes + values
    assert len(b.payload) < 0.75 * len(a.payload)


def _indices_payload(upper_ones: list[int], nbits: int, low_bits: bytes) -> bytes:
    bits = np.zeros(math.ceil(nbits / 8) * 8, dtype=np.uint8)
    bits[upper_ones] = 1
    return np.packbits(bits, bitorder="little").tobytes() + low_bits


def test_crafted_index_blocks_are_refused() -> None:
    codec = TopKEliasFano(ratio=0.2)  # dim 10: k = 2, L = 2, upper block 2 + 3 = 5 bits
    dim = 10
    good = codec.encode(torch.tensor([0, 5, 0, 0, 0, 0, 0, 0, 0, -7.0]))
    assert codec.decode(good)[1] == 5 and codec.decode(good)[9] == -7
    values = good.payload[-8:]
    cases = {
        "padding": _indices_payload([1, 4, 6], 5, b"\x00") + values,  # a 1 past the block
        "ones": _indices_payload([1], 5, b"\x00") + values,  # one index, k = 2
        "duplicate": _indices_payload([0, 1], 5, b"\x00") + values,  # 0 then 0
        "range": _indices_payload([0, 3], 5, b"\x0c") + values,  # 0 then (2 << 2) | 3 = 11
        "low padding": _indices_payload([0, 3], 5, b"\xf0") + values,  # bits past k x L
    }
    for why, payload in cases.items():
        with pytest.raises(CodecError):
            codec.decode(Encoded(codec.name, dim, payload))
            pytest.fail(why)
