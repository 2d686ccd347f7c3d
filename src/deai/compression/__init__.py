"""Update codecs with exact wire bytes (see ``base``), error feedback and a registry."""

from deai.compression.base import Codec, CodecSpec, Encoded, IdentityCodec
from deai.compression.compose import SparseThenQuantize
from deai.compression.error_feedback import ErrorFeedback
from deai.compression.lowrank import PowerSGD
from deai.compression.quantize import QSGD, ScaledSign, StochasticUniform
from deai.compression.registry import CodecConfig, CodecName, build_codec, codec_spec
from deai.compression.sparse import RandomK, SparseCodec, TopK, TopKEliasFano, ValueDType

__all__ = [
    "QSGD",
    "Codec",
    "CodecConfig",
    "CodecName",
    "CodecSpec",
    "Encoded",
    "ErrorFeedback",
    "IdentityCodec",
    "PowerSGD",
    "RandomK",
    "ScaledSign",
    "SparseCodec",
    "SparseThenQuantize",
    "StochasticUniform",
    "TopK",
    "TopKEliasFano",
    "ValueDType",
    "build_codec",
    "codec_spec",
]
