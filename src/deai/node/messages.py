"""Protocol messages and their wire format.

Every message is a frozen dataclass whose fields are ``str``, ``int``, ``float`` or
``bytes``. On the wire a message is::

    u32 little-endian header length | JSON header | blob bytes...

where the header holds ``kind``, the scalar fields and the byte length of each blob field,
in declaration order. Decoding checks the kind, every field's presence and type and the
blob lengths, and never evaluates or unpickles anything. The simulation counts bytes with
exactly this encoding; the HTTP transport sends it.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

from deai.errors import InvalidMessage

MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = "message"
    job_id: str


_REGISTRY: dict[str, type[Message]] = {}


def message(cls: type[Message]) -> type[Message]:
    """Register a message class under its ``kind``."""
    _REGISTRY[cls.kind] = cls
    return cls


@message
@dataclass(frozen=True)
class OpenJob(Message):
    """Requester -> everyone in the job: the job spec (JSON) and its sha256."""

    kind: ClassVar[str] = "open_job"
    spec_json: str
    spec_hash: str


@message
@dataclass(frozen=True)
class TrainTask(Message):
    """Coordinating validator -> provider: train from this global model."""

    kind: ClassVar[str] = "train_task"
    round: int
    model: bytes  # float32 flat parameters, or (``base_round`` >= 0) an encoded delta
    model_hash: str  # sha256 of the model the receiver must end up with; it checks it
    codec: str = "identity"  # codec spec (wire text) of ``model``; identity: raw float32
    base_round: int = -1  # -1: ``model`` is the whole model; else the round whose task
    # model the encoded delta applies to (0: the spec's public initial model). The
    # receiver checks ``model_hash`` of what it rebuilt, so a wrong base cannot pass.


@message
@dataclass(frozen=True)
class Update(Message):
    """Provider -> validators: an encoded update (local params minus global params)."""

    kind: ClassVar[str] = "update"
    round: int
    codec: str
    dim: int
    dtype: str
    payload: bytes
    num_examples: int


@message
@dataclass(frozen=True)
class GossipModel(Message):
    """Provider -> neighbour (D-PSGD): my parameters at the start of ``round``."""

    kind: ClassVar[str] = "gossip_model"
    round: int
    params: bytes


@message
@dataclass(frozen=True)
class FinalModel(Message):
    """Provider -> validators (D-PSGD): my parameters after the last round."""

    kind: ClassVar[str] = "final_model"
    round: int
    params: bytes
    num_examples: int


@message
@dataclass(frozen=True)
class JobResult(Message):
    """Validator -> requester: the trained model, named by its hash."""

    kind: ClassVar[str] = "job_result"
    rounds: int
    model: bytes
    model_hash: str


_SCALARS: dict[Any, type] = {str: str, int: int, float: float, bytes: bytes}


_FIELDS: dict[type[Message], list[tuple[str, type]]] = {}


def _fields(cls: type[Message]) -> list[tuple[str, type]]:
    if cls in _FIELDS:
        return _FIELDS[cls]
    hints = get_type_hints(cls)
    _FIELDS[cls] = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    return _FIELDS[cls]


def encode(msg: Message) -> bytes:
    scalars: dict[str, Any] = {}
    blobs: list[bytes] = []
    lengths: dict[str, int] = {}
    for name, typ in _fields(type(msg)):
        value = getattr(msg, name)
        if typ is bytes:
            blobs.append(value)
            lengths[name] = len(value)
        else:
            scalars[name] = value
    header = json.dumps(
        {"kind": msg.kind, "fields": scalars, "blobs": lengths}, separators=(",", ":")
    ).encode()
    return struct.pack("<I", len(header)) + header + b"".join(blobs)


def decode(data: bytes) -> Message:
    """Parse and type-check a message; raise ``InvalidMessage`` on anything unexpected."""
    if len(data) < 4:
        raise InvalidMessage("message shorter than its length prefix")
    (hlen,) = struct.unpack_from("<I", data)
    if hlen > MAX_HEADER_BYTES or 4 + hlen > len(data):
        raise InvalidMessage(f"bad header length {hlen}")
    try:
        header = json.loads(data[4 : 4 + hlen])
        kind, scalars, lengths = header["kind"], header["fields"], header["blobs"]
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidMessage(f"malformed header: {e}") from e
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidMessage(f"unknown message kind {kind!r}")
    if not isinstance(scalars, dict) or not isinstance(lengths, dict):
        raise InvalidMessage("header fields and blobs must be objects")
    values: dict[str, Any] = {}
    offset = 4 + hlen
    for name, typ in _fields(cls):
        if typ is bytes:
            n = lengths.get(name)
            if not isinstance(n, int) or n < 0 or offset + n > len(data):
                raise InvalidMessage(f"{kind}.{name}: bad blob length {n!r}")
            values[name] = data[offset : offset + n]
            offset += n
        else:
            v = scalars.get(name)
            ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v, ok = float(v), True
            if not ok:
                raise InvalidMessage(f"{kind}.{name}: expected {typ.__name__}, got {v!r:.40}")
            values[name] = v
    if offset != len(data):
        raise InvalidMessage(f"{kind}: {len(data) - offset} trailing bytes")
    extra = set(scalars) - set(values)
    if extra:
        raise InvalidMessage(f"{kind}: unexpected fields {sorted(extra)}")
    return cls(**values)
