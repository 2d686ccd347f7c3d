"""One clear line per mistake: pydantic errors and TOML files turned into ConfigErrors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from deai.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model that holds the field at ``loc`` (for typo messages)."""
    import typing

    cls: Any = model
    for part in loc[:-1]:
        if cls is None:
            return []
        if isinstance(part, int):
            continue
        fields = getattr(cls, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        cls = None
        for cand in (ann, *typing.get_args(ann)):
            for c in (cand, *typing.get_args(cand)):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    cls = c
    return sorted(getattr(cls, "model_fields", {})) if cls is not None else []


def describe_error(err: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """``field.path: got <value>: <what is wrong>; allowed: <what is allowed>``."""
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, tuple(err["loc"]))
        close = ""
        if known:
            import difflib

            match = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            close = f" (did you mean {match[0]!r}?)" if match else ""
        names = f"; allowed: {', '.join(known)}" if known else "; check the spelling"
        return f"{loc}: unknown field{close}{names}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    allowed = (err.get("ctx") or {}).get("expected")
    tail = f"; allowed: {allowed}" if allowed and str(allowed) not in msg else ""
    if err["type"] in ("value_error", "assertion_error"):
        text = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{loc}: {text}" if loc != "(top level)" else text
    value = err.get("input")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{loc}: got {shown}: {msg}{tail}"


def validate(cls: type[M], data: Any, source: str, what: str) -> M:
    """``cls.model_validate(data)`` with every error as one line of one ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a {what} must be a table of fields, got {type(data).__name__}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = [describe_error(dict(err), cls) for err in e.errors()]
        raise ConfigError(f"{source}: invalid {what}: " + "; ".join(lines)) from None
    except ConfigError as e:  # raised by a registry inside a validator
        raise ConfigError(f"{source}: invalid {what}: {e}") from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's table, with one message for every way reading it can fail."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a {what} file")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what} file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}): is it a {what} file?") from None
    if not text.strip():
        raise ConfigError(f"{p}: the {what} file is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
