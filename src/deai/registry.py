"""Registries: names a job spec can use for datasets, models, aggregators, attacks, codecs.

A :class:`Registry` maps a name to a factory and, optionally, a pydantic model of the
factory's parameters (so a spec is validated, and its defaults filled in, before anything
runs). Built-in entries are declared lazily as ``"module:attribute"`` strings, so looking a
name up imports only the plane that defines it; users add their own with a decorator::

    import deai

    @deai.datasets.register("my-data")
    def my_data(seed: int) -> deai.Dataset: ...

or through an entry point in their package's ``pyproject.toml``::

    [project.entry-points."deai.models"]
    my-model = "my_package.models:factory"

A name that is not registered is a :class:`~deai.errors.ConfigError` listing every
allowed name (built-in, decorated and from entry points).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from deai.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered name."""

    name: str
    factory: Callable[..., Any]
    params: type[BaseModel] | None  # validates the entry's parameters; None: any JSON values
    doc: str  # first line of the factory's docstring
    builtin: bool


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    # the job package first: its spec validates its defaults through these registries when
    # it is imported, so an entry module that imports deai.job's types must not be the one
    # that starts that import (a circular import otherwise)
    importlib.import_module("deai.job")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[F]):
    """Names -> factories for one kind of component (``kind`` is used in messages)."""

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: Mapping[str, tuple[str, str | None]],
        positional: tuple[str, ...] = (),
    ):
        self.kind = kind
        self.positional = positional  # what the runtime passes before the parameters
        self.group = group  # the entry-point group, e.g. "deai.models"
        self._lazy = dict(builtins)  # name -> ("module:factory", "module:Params" | None)
        self._entries: dict[str, Entry] = {}
        self._entry_points_loaded = False

    # ------------------------------------------------------------------ registering
    def register(
        self, name: str, *, params: type[BaseModel] | None = None, replace: bool = False
    ) -> Callable[[F], F]:
        """Decorator: register ``factory`` under ``name``. ``params``, if given, is a
        pydantic model of the factory's keyword parameters (strict, with defaults)."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def deco(factory: F) -> F:
            if not replace and (name in self._entries or name in self._lazy):
                raise ConfigError(
                    f"{self.kind} {name!r} is already registered; pass replace=True to override"
                )
            self._lazy.pop(name, None)
            self._entries[name] = Entry(name, factory, params, _first_line(factory), False)
            return factory

        return deco

    def unregister(self, name: str) -> None:
        """Remove a user entry (tests and notebooks re-register freely)."""
        self._entries.pop(name, None)

    # ------------------------------------------------------------------ looking up
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries or ep.name in self._lazy:
                continue
            try:
                obj = ep.load()
            except Exception as e:  # a broken plug-in must not break the built-ins
                raise ConfigError(
                    f"{self.kind} entry point {ep.name!r} ({ep.value}) failed to load: {e}"
                ) from None
            params = getattr(obj, "deai_params", None)
            self._entries[ep.name] = Entry(ep.name, obj, params, _first_line(obj), False)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted({*self._lazy, *self._entries})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        if name in self._lazy:
            target, params = self._lazy[name]
            factory = _import(target)
            entry = Entry(
                name, factory, _import(params) if params else None, _first_line(factory), True
            )
            self._entries[name] = entry
            return entry
        self._load_entry_points()
        if name in self._entries:
            return self._entries[name]
        raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")

    def validate_params(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The entry's parameters checked and with defaults filled, as plain JSON values."""
        entry = self.get(name)
        if entry.params is None:
            return _by_signature(self.kind, entry, dict(params), self.positional)
        try:
            model = entry.params.model_validate(dict(params))
        except ValidationError as e:
            from deai.job.errors import describe_error

            lines = [describe_error(dict(err)) for err in e.errors()]
            raise ConfigError(f"{self.kind} {name!r}: " + "; ".join(lines)) from None
        out: dict[str, Any] = model.model_dump(mode="json")
        return out

    def build(self, name: str, params: Mapping[str, Any], *args: Any) -> Any:
        """Call the factory: ``factory(*args, **validated_params)``."""
        entry = self.get(name)
        return entry.factory(*args, **self.validate_params(name, params))


def _by_signature(
    kind: str, entry: Entry, params: dict[str, Any], positional: tuple[str, ...]
) -> dict[str, Any]:
    """Without a parameter model, the factory's own keyword parameters are the allowed
    names (unless it takes ``**kwargs``)."""
    import inspect

    try:
        sig = inspect.signature(entry.factory)
    except (TypeError, ValueError):
        return params
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return params
    known = [
        n
        for n, p in sig.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in positional
    ]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(
            f"{kind} {entry.name!r} has no parameter(s) {unknown}; "
            f"allowed: {', '.join(known) or 'none'}"
        )
    return params


def _first_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


# --------------------------------------------------------------------------- the registries
# Built-ins are declared here by import path, so the spec layer can validate names without
# importing every plane. Each factory's signature is documented in docs/api.md.

datasets: Registry[Callable[..., Any]] = Registry(
    "dataset",
    "deai.datasets",
    {
        "digits": ("deai.learning.data:digits", None),
        "wine": ("deai.learning.data:wine", None),
        "breast_cancer": ("deai.learning.data:breast_cancer", None),
        "iris": ("deai.learning.data:iris", None),
        "synthetic": ("deai.learning.data:synthetic", "deai.learning.data:SyntheticParams"),
        "csv": ("deai.learning.data:csv_file", "deai.learning.data:FileParams"),
        "parquet": ("deai.learning.data:parquet_file", "deai.learning.data:FileParams"),
        "python_stdlib": ("deai.llm.plugin:python_stdlib", "deai.llm.plugin:StdlibParams"),
    },
    positional=("seed",),
)

models: Registry[Callable[..., Any]] = Registry(
    "model",
    "deai.models",
    {
        "mlp": ("deai.learning.models:mlp", "deai.learning.models:MLPParams"),
        "logreg": ("deai.learning.models:logreg", "deai.learning.models:NoParams"),
        "cnn": ("deai.learning.models:cnn", "deai.learning.models:CNNParams"),
        "llama": ("deai.llm.plugin:llama", "deai.llm.plugin:LlamaParams"),
        "smollm2_lora": ("deai.llm.plugin:smollm2_lora", "deai.llm.plugin:LoRAParams"),
    },
    positional=("input_shape", "num_classes"),
)

aggregators: Registry[Callable[..., Any]] = Registry(
    "aggregator",
    "deai.aggregators",
    {
        name: ("deai.aggregation.plugin:" + name, "deai.aggregation.plugin:params_" + name)
        for name in (
            "mean",
            "krum",
            "multi_krum",
            "median",
            "trimmed_mean",
            "geometric_median",
            "bulyan",
            "centered_clipping",
            "norm_bounding",
            "fltrust",
            "foolsgold",
            "default",
        )
    },
)

codecs: Registry[Callable[..., Any]] = Registry(
    "codec",
    "deai.codecs",
    {
        name: ("deai.compression.plugin:" + name, "deai.compression.plugin:Params")
        for name in (
            "identity",
            "topk",
            "randk",
            "quantize",
            "qsgd",
            "sign",
            "powersgd",
            "topk_quantize",
            "randk_quantize",
            "topk_eliasfano_quantize",
        )
    },
    positional=("shapes", "seed"),
)

attacks: Registry[Callable[..., Any]] = Registry(
    "attack",
    "deai.attacks",
    {
        name: ("deai.attacks.plugin:" + name, None)
        for name in (
            "none",
            "label_flip",
            "backdoor",
            "sign_flip",
            "gaussian",
            "alie",
            "ipm",
            "min_max",
            "min_sum",
            "adaptive",
            "free_rider_zero",
            "free_rider_stale",
            "free_rider_noise",
        )
    },
    positional=("seed",),
)
