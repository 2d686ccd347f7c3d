"""Exact wire sizes of protocol messages without building them.

``len(encode(msg))`` is ``4 + len(header) + sum(len(blob))``: the header is a short JSON
object of the scalar fields and blob lengths, the blobs are only counted. The simulator
sends one message object to many nodes (a train task to every provider, a job to everyone,
an update to every validator), so the sizes of the last few message objects are kept.
"""

from __future__ import annotations

import json

from deai.node.messages import Message, _fields

_RECENT = 8
_recent: dict[int, tuple[Message, int]] = {}  # id -> (the message, kept alive; its size)


def wire_size(msg: Message) -> int:
    """``len(deai.node.messages.encode(msg))``, exactly, without copying the blobs."""
    hit = _recent.get(id(msg))
    if hit is not None and hit[0] is msg:
        return hit[1]
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
    if len(_recent) >= _RECENT:
        _recent.pop(next(iter(_recent)))
    _recent[id(msg)] = (msg, size)
    return size
