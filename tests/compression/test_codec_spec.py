"""Every codec describes itself (name + decoding parameters): distinct names on the wire,
a canonical wire form, and ``build_codec(spec)`` rebuilds the same codec."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.compression import CodecConfig, CodecName, CodecSpec, build_codec, codec_spec
from deai.compression.sparse import ValueDType
from deai.errors import CodecError, ConfigError

SHAPES = ((8, 6), (8,), (5, 2, 3), (4,))
DIM = 48 + 8 + 30 + 4


def _cfg(**kw: object) -> CodecConfig:
    return CodecConfig(shapes=SHAPES, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(CodecName))
def test_spec_rebuilds_an_equal_codec(name: CodecName) -> None:
    cfg = _cfg(ratio=0.2, bits=3, levels=7, bucket_size=16, rank=2, seed=5)
    codec = build_codec(name, cfg)
    assert codec.name == name.value
    assert codec.spec == codec_spec(name, cfg)
    again = build_codec(CodecSpec.from_wire(codec.spec.to_wire()), shapes=SHAPES, seed=9)
    assert again.spec == codec.spec
    x = torch.randn(DIM, generator=torch.Generator().manual_seed(0))
    enc = codec.encode(x)
    torch.testing.assert_close(again.decode(enc), codec.decode(enc))  # the seed is not needed


def test_every_codec_sends_its_own_name() -> None:
    names = [build_codec(n, _cfg()).name for n in CodecName]
    assert len(set(names)) == len(names)


def test_a_randk_decoder_refuses_a_topk_payload() -> None:
    # Before codecs described themselves both compositions sent "sparse_quantize", so a
    # validator expecting random-k decoded a top-k payload as if it were its own.
    topk = build_codec(CodecName.TOPK_QUANTIZE, _cfg(ratio=0.1))
    randk = build_codec(CodecName.RANDK_QUANTIZE, _cfg(ratio=0.1))
    enc = topk.encode(torch.randn(DIM))
    with pytest.raises(CodecError):
        randk.decode(enc)


def test_spec_lists_only_what_the_codec_reads() -> None:
    assert codec_spec(CodecName.IDENTITY).to_wire() == "identity"
    assert codec_spec(CodecName.TOPK, _cfg(ratio=0.05, bits=2)).as_dict() == {
        "ratio": 0.05,
        "value_dtype": "fp32",
    }
    assert codec_spec(CodecName.TOPK_QUANTIZE, _cfg(ratio=0.05)).to_wire() == (
        'topk_quantize{"bits":4,"bucket_size":0,"ratio":0.05}'
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * 600,
        "TopK",
        "topk;drop",
        'topk{"ratio":0.1,"value_dtype":"fp32"',
        'topk{"value_dtype":"fp32","ratio":0.1}',  # not canonical (unsorted)
        'topk{"ratio":true}',
        'topk{"ratio":[1]}',
        'topk {"ratio":0.1}',
    ],
)
def test_malformed_wire_specs_are_refused(text: str) -> None:
    with pytest.raises(CodecError):
        CodecSpec.from_wire(text)


@pytest.mark.parametrize(
    "spec",
    [
        CodecSpec.of("nope"),
        CodecSpec.of("topk", ratio=0.1, bits=4),  # a parameter topk does not read
        CodecSpec.of("quantize", bits=2.5),
        CodecSpec.of("topk", ratio="a"),
        CodecSpec.of("topk", value_dtype="fp8"),
        CodecSpec.of("topk", ratio=2.0),
    ],
)
def test_bad_specs_do_not_build(spec: CodecSpec) -> None:
    with pytest.raises(ConfigError):
        build_codec(spec)


@given(
    name=st.sampled_from([n for n in CodecName if n is not CodecName.POWERSGD]),
    ratio=st.floats(0.001, 1.0),
    bits=st.integers(1, 16),
    levels=st.integers(1, 1000),
    bucket=st.integers(0, 4096),
    half=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_wire_form_roundtrips(
    name: CodecName, ratio: float, bits: int, levels: int, bucket: int, half: bool
) -> None:
    dtype = ValueDType.FP16 if half else ValueDType.FP32
    cfg = CodecConfig(ratio=ratio, bits=bits, levels=levels, bucket_size=bucket, value_dtype=dtype)
    spec = build_codec(name, cfg).spec
    parsed = CodecSpec.from_wire(spec.to_wire())
    assert parsed == spec and build_codec(parsed).spec == spec
