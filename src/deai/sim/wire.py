"""Exact wire sizes of protocol messages without building them.

``len(encode(msg))`` is ``4 + len(header) + sum(len(blob))``: the header is a short JSON
object of the scalar fields and blob lengths, the blobs are only counted. The simulator
sends one message object to many nodes (a train task to every provider, a job to everyone,
an update to every validator), so the size of the last message measured is kept.
"""

from __future__ import annotations

import json

from deai.node.messages import Message, _fields


class _Last:
    msg: Message | None = None
    size: int = 0


_last = _Last()


def wire_size(msg: Message) -> int:
    """``len(deai.node.messages.encode(msg))``, exactly, without copying the blobs."""
    if _last.msg is msg:
        return _last.size
    scalars: dict[str, object] = {}
    lengths: dict[str, int] = {}
    blob_bytes = 0
    for name, typ in _fields(type(msg)):
        value = getattr(msg, name)
        if typ is bytes:
            lengths[name] = len(value)
            blob_bytes += len(value)
        else:
            scalars[name] = value
    header = json.dumps(
        {"kind": msg.kind, "fields": scalars, "blobs": lengths}, separators=(",", ":")
    )
    # json.dumps escapes every non-ASCII character, so one character is one byte
    size = 4 + len(header) + blob_bytes
    _last.msg, _last.size = msg, size
    return size
