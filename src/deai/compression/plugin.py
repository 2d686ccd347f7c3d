"""The codecs as :data:`deai.registry.codecs` entries: ``factory(shapes, seed, **params)``.

``shapes`` (the model's layer shapes, for PowerSGD) and ``seed`` (for randomized codecs)
come from the job; the rest are the codec's parameters, checked by :class:`Params`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from deai.compression.base import Codec
from deai.compression.registry import CodecConfig, CodecName, build_codec
from deai.compression.sparse import ValueDType
from deai.job.types import Float, NonNegativeInt, PositiveInt


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: Annotated[Float, Field(gt=0, le=1)] = 0.01  # top-k / random-k keep fraction
    value_dtype: ValueDType = ValueDType.FP32  # how plain sparse codecs send values
    bits: Annotated[PositiveInt, Field(le=16)] = 4  # quantizer bits per value
    levels: PositiveInt = 16  # QSGD levels
    bucket_size: NonNegativeInt = 0  # coordinates per quantization bucket; 0 = whole vector
    rank: PositiveInt = 4  # PowerSGD rank


def _factory(name: CodecName) -> Any:
    def factory(shapes: tuple[tuple[int, ...], ...], seed: int, **params: Any) -> Codec:
        return build_codec(name, CodecConfig(**params, shapes=shapes, seed=seed))

    factory.__doc__ = f"The {name.value} codec (deai.compression)."
    return factory


identity = _factory(CodecName.IDENTITY)
topk = _factory(CodecName.TOPK)
randk = _factory(CodecName.RANDK)
quantize = _factory(CodecName.QUANTIZE)
qsgd = _factory(CodecName.QSGD)
sign = _factory(CodecName.SIGN)
powersgd = _factory(CodecName.POWERSGD)
topk_quantize = _factory(CodecName.TOPK_QUANTIZE)
randk_quantize = _factory(CodecName.RANDK_QUANTIZE)
topk_eliasfano_quantize = _factory(CodecName.TOPK_ELIASFANO_QUANTIZE)
