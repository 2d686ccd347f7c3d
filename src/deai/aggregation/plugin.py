"""The aggregators as :data:`deai.registry.aggregators` entries.

Each entry is ``factory(**params) -> Aggregator`` over the registry's frozen configs; the
parameter model :class:`Params` refuses unknown keys, non-integral or boolean ``f``, NaN
and out-of-range values with one message naming the field. A fresh aggregator per call,
so stateful rules keep per-job history.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from deai.aggregation.base import Aggregator
from deai.aggregation.default import DefaultConfig
from deai.aggregation.registry import AggregatorConfig, AggregatorName, build_aggregator
from deai.errors import ConfigError
from deai.job.types import Float, NonNegativeInt, PositiveFloat, PositiveInt


class _AllParams(BaseModel):
    """Every rule's parameters; each rule's own model takes the ones it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    f: NonNegativeInt = 0  # attackers assumed (krum, multi_krum, bulyan; trimmed_mean's trim)
    multi_krum_m: PositiveInt | None = None  # rows Multi-Krum averages; None: n - f
    trim_fraction: Annotated[Float, Field(ge=0, lt=0.5)] | None = None  # trimmed_mean
    tau: PositiveFloat | None = None  # centered clipping radius; None: median distance
    cc_iterations: PositiveInt = 3
    norm_bound: PositiveFloat | None = None  # norm_bounding; None: the median norm
    gm_nu: PositiveFloat = 1e-6  # geometric median smoothing
    gm_max_iter: PositiveInt = 200
    gm_ftol: Annotated[Float, Field(ge=0)] = 1e-10
    foolsgold_kappa: PositiveFloat = 1.0


_RULE_FIELDS: dict[AggregatorName, tuple[str, ...]] = {
    AggregatorName.MEAN: (),
    AggregatorName.KRUM: ("f",),
    AggregatorName.MULTI_KRUM: ("f", "multi_krum_m"),
    AggregatorName.MEDIAN: (),
    AggregatorName.TRIMMED_MEAN: ("f", "trim_fraction"),
    AggregatorName.GEOMETRIC_MEDIAN: ("gm_nu", "gm_max_iter", "gm_ftol"),
    AggregatorName.BULYAN: ("f",),
    AggregatorName.CENTERED_CLIPPING: ("tau", "cc_iterations"),
    AggregatorName.NORM_BOUNDING: ("norm_bound",),
    AggregatorName.FLTRUST: (),
    AggregatorName.FOOLSGOLD: ("foolsgold_kappa",),
}


def _strict_numbers(t: Any) -> Any:
    """``int`` / ``float`` (also inside ``X | None``) as the spec's bool- and NaN-refusing
    number types."""
    plain = {int: NonNegativeInt, float: Float}
    if t in plain:
        return plain[t]
    args = get_args(t)
    if args and type(None) in args and len(args) == 2:
        inner = next(a for a in args if a is not type(None))
        if inner in plain:
            return plain[inner] | None
    return t


class _DefaultParamsBase(BaseModel):
    """The default rule's parameters also pass :class:`DefaultConfig`'s own range checks
    when the spec is read, not only when a validator builds the rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _ranges(self) -> _DefaultParamsBase:
        try:
            DefaultConfig(**dict(self))
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self


def _rule_params(name: AggregatorName) -> type[BaseModel]:
    """The parameter model of one rule: its own fields only, so a misplaced parameter
    (``trim_fraction`` for krum) is an error, not silently ignored."""
    if name is AggregatorName.DEFAULT:
        hints = get_type_hints(DefaultConfig)
        fields_: dict[str, Any] = {}
        for f in fields(DefaultConfig):
            t = hints[f.name]
            t = _strict_numbers(t)
            fields_[f.name] = (t, f.default)
        return create_model("DefaultParams", __base__=_DefaultParamsBase, **fields_)
    keep = _RULE_FIELDS[name]
    all_fields = _AllParams.model_fields
    return create_model(  # type: ignore[call-overload]
        f"{name.value.title().replace('_', '')}Params",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **{k: (all_fields[k].annotation, all_fields[k]) for k in keep},
    )


def _config(name: AggregatorName, params: dict[str, Any]) -> AggregatorConfig:
    if name is AggregatorName.DEFAULT:
        return AggregatorConfig(default=DefaultConfig(**params))
    return AggregatorConfig(**params)


def _factory(name: AggregatorName) -> Any:
    def factory(**params: Any) -> Aggregator:
        return build_aggregator(name, _config(name, params))

    factory.__doc__ = f"The {name.value} aggregation rule (deai.aggregation)."
    return factory


for _name in AggregatorName:
    globals()[_name.value] = _factory(_name)
    globals()[f"params_{_name.value}"] = _rule_params(_name)


def min_rows(name: str, params: dict[str, Any]) -> int:
    """Rows a rule needs to run at all (a round with fewer applies no update)."""
    f = int(params.get("f", 0))
    if name in ("krum", "multi_krum"):
        return 2 * f + 3
    if name == "bulyan":
        return 4 * f + 3
    if name == "trimmed_mean" and params.get("trim_fraction") is None:
        return 2 * f + 1
    return 1
