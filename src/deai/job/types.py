"""Field types every spec section uses: numbers that refuse booleans, NaN and infinity.

pydantic's lax mode turns ``True`` into ``1`` and accepts ``nan``; a job spec decides
money and models, so both are refused with a message that names the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    return v


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    return v


Int = StrictInt  # an integer; 2.5 and True are refused
Float = Annotated[float, BeforeValidator(_no_bool), AfterValidator(_finite)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Fraction = Annotated[Float, Field(ge=0, le=1)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]  # 63 bits: fits every RNG we seed
