"""Exact wire sizes of protocol messages without building them.

``len(encode(msg))`` is ``4 + len(header) + sum(len(blob))``: the header is a short JSON
object of the scalar fields and blob lengths, the blobs are only counted. The simulator
sends one message object to many nodes (a train task to every provider, a job to everyone,
an update to every validator), so the sizes of the last few message objects are kept; and
many messages share a header (every provider's update of a round differs only in its
payload), so header lengths are kept by the values that make them.
"""

from __future__ import annotations

import json

from deai.node.messages import Message, _fields

_RECENT = 8
_recent: dict[int, tuple[Message, int]] = {}  # id -> (the message, kept alive; its size)
_HEADERS = 4096
# (class, per field: a str or int value (same value, same JSON), a float or other value
# as (type, repr), or a blob's length as ("len", n)) -> header length
_headers: dict[tuple[object, ...], int] = {}


def _header_len(msg: Message) -> int:
    scalars: dict[str, object] = {}
    lengths: dict[str, int] = {}
    for name, typ in _fields(type(msg)):
        value = getattr(msg, name)
        if typ is bytes:
            lengths[name] = len(value)
        else:
            scalars[name] = value
    header = json.dumps(
        {"kind": msg.kind, "fields": scalars, "blobs": lengths}, separators=(",", ":")
    )
    # json.dumps escapes every non-ASCII character, so one character is one byte
    return len(header)


def wire_size(msg: Message) -> int:
    """``len(deai.node.messages.encode(msg))``, exactly, without copying the blobs."""
    hit = _recent.get(id(msg))
    if hit is not None and hit[0] is msg:
        return hit[1]
    cls = type(msg)
    key: list[object] = [cls]
    blob_bytes = 0
    for name, typ in _fields(cls):
        value = getattr(msg, name)
        if typ is bytes:
            n = len(value)
            blob_bytes += n
            key.append(("len", n))
        elif type(value) is str or type(value) is int:  # exact types: not bool
            key.append(value)
        else:  # floats by repr, as JSON writes them: 0.0 and -0.0 differ, NaN matches
            key.append((type(value), repr(value)))
    k = tuple(key)
    header = _headers.get(k)
    if header is None:
        header = _header_len(msg)
        if len(_headers) >= _HEADERS:
            _headers.clear()
        _headers[k] = header
    size = 4 + header + blob_bytes
    if len(_recent) >= _RECENT:
        _recent.pop(next(iter(_recent)))
    _recent[id(msg)] = (msg, size)
    return size
