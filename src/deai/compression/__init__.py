"""Update codecs with exact wire bytes (see ``base``), error feedback and a registry."""

from deai.compression.base import Codec, Encoded, IdentityCodec
from deai.compression.compose import SparseThenQuantize
from deai.compression.error_feedback import ErrorFeedback
from deai.compression.lowrank import PowerSGD
from deai.compression.quantize import QSGD, ScaledSign, StochasticUniform
from deai.compression.registry import CodecConfig, CodecName, build_codec
from deai.compression.sparse import RandomK, SparseCodec, TopK, ValueDType

__all__ = [
    "QSGD",
    "Codec",
    "CodecConfig",
    "CodecName",
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
    "ValueDType",
    "build_codec",
]
