"""Codec registry: a :class:`CodecName` and a frozen :class:`CodecConfig` build any codec.

Every field has a default that suits a ~10k–1M parameter model; each codec reads only the
fields it needs. Randomized codecs draw from ``seed``, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from deai.compression.base import Codec, IdentityCodec
from deai.compression.compose import SparseThenQuantize
from deai.compression.lowrank import PowerSGD
from deai.compression.quantize import QSGD, ScaledSign, StochasticUniform
from deai.compression.sparse import RandomK, TopK, ValueDType
from deai.errors import ConfigError


class CodecName(StrEnum):
    IDENTITY = "identity"  # fp32, 32 bits per coordinate
    TOPK = "topk"  # largest |x_i|, bit-packed indices + fp32/fp16 values
    RANDK = "randk"  # seeded uniform coordinates, same layout as top-k
    QUANTIZE = "quantize"  # stochastic uniform, `bits` per coordinate
    QSGD = "qsgd"  # QSGD with `levels` levels
    SIGN = "sign"  # scaled sign, 1 bit per coordinate
    POWERSGD = "powersgd"  # per-layer rank-`rank` PowerSGD, needs `shapes`
    TOPK_QUANTIZE = "topk_quantize"  # top-k, kept values quantized to `bits`
    RANDK_QUANTIZE = "randk_quantize"  # random-k, kept values quantized to `bits`


@dataclass(frozen=True)
class CodecConfig:
    ratio: float = 0.01  # fraction of coordinates kept by top-k / random-k
    value_dtype: ValueDType = ValueDType.FP32  # how plain sparse codecs send values
    bits: int = 4  # stochastic uniform bits per coordinate (1, 2, 4 or 8 typical)
    levels: int = 16  # QSGD s (number of non-zero levels)
    bucket_size: int = 0  # coordinates per quantization bucket; 0 = whole vector
    rank: int = 4  # PowerSGD rank per layer
    shapes: tuple[tuple[int, ...], ...] = ()  # layer shapes in vector order (PowerSGD)
    seed: int = 0  # seed of every random draw a codec makes


def build_codec(name: CodecName, config: CodecConfig | None = None) -> Codec:
    """Construct the codec ``name`` from ``config`` (defaults if ``None``)."""
    c = config or CodecConfig()
    match CodecName(name):
        case CodecName.IDENTITY:
            return IdentityCodec()
        case CodecName.TOPK:
            return TopK(c.ratio, c.value_dtype)
        case CodecName.RANDK:
            return RandomK(c.ratio, c.value_dtype, seed=c.seed)
        case CodecName.QUANTIZE:
            return StochasticUniform(c.bits, c.bucket_size, seed=c.seed)
        case CodecName.QSGD:
            return QSGD(c.levels, c.bucket_size, seed=c.seed)
        case CodecName.SIGN:
            return ScaledSign(c.bucket_size)
        case CodecName.POWERSGD:
            if not c.shapes:
                raise ConfigError("powersgd: CodecConfig.shapes must list the layer shapes")
            return PowerSGD(c.shapes, c.rank, seed=c.seed)
        case CodecName.TOPK_QUANTIZE:
            quant = StochasticUniform(c.bits, c.bucket_size, seed=c.seed)
            return SparseThenQuantize(TopK(c.ratio), quant)
        case CodecName.RANDK_QUANTIZE:
            quant = StochasticUniform(c.bits, c.bucket_size, seed=c.seed + 1)
            return SparseThenQuantize(RandomK(c.ratio, seed=c.seed), quant)
    raise ConfigError(f"registry: unknown codec {name!r}")  # pragma: no cover
