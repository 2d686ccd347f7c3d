"""Codec registry: a :class:`~deai.compression.base.CodecSpec` (name and parameters), or a
:class:`CodecName` with a frozen :class:`CodecConfig`, builds any codec.

Every field has a default that suits a ~10k–1M parameter model; each codec reads only the
fields it needs (:data:`PARAMS` lists them: exactly what ``codec.spec`` reports, so
``build_codec(codec.spec)`` rebuilds an equal codec). Randomized codecs draw from ``seed``,
which is the sender's and never part of the spec; PowerSGD's layer ``shapes`` come from
the model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from deai.compression.base import Codec, CodecSpec, IdentityCodec
from deai.compression.compose import SparseThenQuantize
from deai.compression.lowrank import PowerSGD
from deai.compression.quantize import QSGD, ScaledSign, StochasticUniform
from deai.compression.sparse import RandomK, TopK, TopKEliasFano, ValueDType
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
    TOPK_ELIASFANO_QUANTIZE = "topk_eliasfano_quantize"  # top-k, Elias-Fano indices


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


PARAMS: dict[CodecName, tuple[str, ...]] = {
    CodecName.IDENTITY: (),
    CodecName.TOPK: ("ratio", "value_dtype"),
    CodecName.RANDK: ("ratio", "value_dtype"),
    CodecName.QUANTIZE: ("bits", "bucket_size"),
    CodecName.QSGD: ("levels", "bucket_size"),
    CodecName.SIGN: ("bucket_size",),
    CodecName.POWERSGD: ("rank",),
    CodecName.TOPK_QUANTIZE: ("ratio", "bits", "bucket_size"),
    CodecName.RANDK_QUANTIZE: ("ratio", "bits", "bucket_size"),
    CodecName.TOPK_ELIASFANO_QUANTIZE: ("ratio", "bits", "bucket_size"),
}


def codec_spec(name: CodecName | str, config: CodecConfig | None = None) -> CodecSpec:
    """The spec of codec ``name`` configured by ``config``: only the fields it reads."""
    try:
        n = CodecName(name)
    except ValueError:
        raise ConfigError(f"registry: unknown codec {name!r}") from None
    c = config or CodecConfig()
    values = {k: getattr(c, k) for k in PARAMS[n]}
    return CodecSpec.of(n.value, **{k: getattr(v, "value", v) for k, v in values.items()})


def config_from_spec(spec: CodecSpec) -> tuple[CodecName, CodecConfig]:
    """The name and config a spec describes; unknown names or parameters are refused."""
    try:
        n = CodecName(spec.name)
    except ValueError:
        raise ConfigError(f"registry: unknown codec {spec.name!r}") from None
    given = spec.as_dict()
    extra = set(given) - set(PARAMS[n])
    if extra:
        raise ConfigError(f"codec {n.value}: unknown parameters {sorted(extra)}")
    types = {f.name: f.type for f in fields(CodecConfig)}
    clean: dict[str, Any] = {}
    for k, v in given.items():
        if k == "value_dtype":
            try:
                clean[k] = ValueDType(v if isinstance(v, str) else "")
            except ValueError:
                raise ConfigError(f"codec {n.value}: value_dtype {v!r}") from None
        elif types[k] in ("int", int) and (not isinstance(v, int) or isinstance(v, bool)):
            raise ConfigError(f"codec {n.value}: {k} must be an integer, got {v!r}")
        elif not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError(f"codec {n.value}: {k} must be a number, got {v!r}")
        else:
            clean[k] = v
    return n, replace(CodecConfig(), **clean)


def build_codec(
    name: CodecName | str | CodecSpec,
    config: CodecConfig | None = None,
    *,
    shapes: tuple[tuple[int, ...], ...] = (),
    seed: int | None = None,
) -> Codec:
    """Construct a codec from its spec, or from ``name`` and ``config`` (defaults if
    ``None``). ``shapes`` and ``seed``, if given, override the config's."""
    if isinstance(name, CodecSpec):
        if config is not None:
            raise ConfigError("build_codec: pass a CodecSpec or a name with a config, not both")
        name, config = config_from_spec(name)
    c = config or CodecConfig()
    if shapes:
        c = replace(c, shapes=shapes)
    if seed is not None:
        c = replace(c, seed=seed)
    try:
        n = CodecName(name)
    except ValueError:
        raise ConfigError(f"registry: unknown codec {name!r}") from None
    match n:
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
        case CodecName.TOPK_ELIASFANO_QUANTIZE:
            quant = StochasticUniform(c.bits, c.bucket_size, seed=c.seed)
            return SparseThenQuantize(TopKEliasFano(c.ratio), quant)
    raise ConfigError(f"registry: unknown codec {n!r}")  # pragma: no cover
