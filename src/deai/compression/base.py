"""The update-codec contract (after hivemind's ``compression/base.py``).

A codec turns a flat float update ``Tensor[d]`` into wire bytes and back. ``encode``
returns an :class:`Encoded` whose ``payload`` is exactly what crosses the wire, so byte
counts are exact. Decoding peer bytes never unpickles anything: payloads are raw,
documented little-endian layouts checked against ``dim``.

Every codec describes itself by a frozen :class:`CodecSpec`: its registry name and exactly
the parameters a receiver needs to decode its payloads (never the sender's random seed,
which decoding does not need and which is the sender's own). ``CodecSpec.to_wire()`` is a
canonical string for a message header or a job spec; :meth:`CodecSpec.from_wire` parses
one from a peer and checks it, and :func:`deai.compression.registry.build_codec` builds the
codec back from it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deai.errors import CodecError
from deai.learning.params import vector_bytes

ParamValue = int | float | str  # a codec parameter as it appears on the wire
MAX_WIRE_SPEC = 512  # characters; a longer codec description from a peer is refused


@dataclass(frozen=True)
class CodecSpec:
    """A codec's public description: its name and decoding parameters, sorted by key."""

    name: str  # registry name, e.g. "topk_quantize"
    params: tuple[tuple[str, ParamValue], ...] = ()  # (key, value), sorted by key

    @staticmethod
    def of(name: str, **params: ParamValue) -> CodecSpec:
        return CodecSpec(str(name), tuple(sorted(params.items())))

    def as_dict(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def to_wire(self) -> str:
        """Canonical text: ``name`` alone, or ``name`` and the sorted parameters as JSON."""
        if not self.params:
            return self.name
        return self.name + json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_wire(text: str) -> CodecSpec:
        """Parse :meth:`to_wire` output from a peer (raises ``CodecError``)."""
        if not isinstance(text, str) or not 0 < len(text) <= MAX_WIRE_SPEC:
            raise CodecError("codec spec: empty, not text, or too long")
        name, brace, rest = text.partition("{")
        if not name.replace("_", "").isalnum() or not name.islower():
            raise CodecError(f"codec spec: bad codec name {name[:40]!r}")
        if not brace:
            return CodecSpec(name)
        try:
            raw = json.loads(brace + rest)
        except ValueError:
            raise CodecError("codec spec: parameters are not JSON") from None
        if not isinstance(raw, dict) or not all(
            isinstance(v, int | float | str) and not isinstance(v, bool) for v in raw.values()
        ):
            raise CodecError("codec spec: parameters must map names to numbers or strings")
        spec = CodecSpec.of(name, **raw)
        if spec.to_wire() != text:
            raise CodecError("codec spec: not in canonical form")
        return spec


@dataclass(frozen=True)
class Encoded:
    codec: str  # registry name of the codec that produced the payload
    dim: int  # length of the decoded vector
    payload: bytes  # the exact wire bytes

    @property
    def nbytes(self) -> int:
        return len(self.payload)


class Codec(ABC):
    """Encode and decode flat float32 updates. Stateless; error feedback wraps a codec."""

    name: str  # registry name (a class attribute, or set per instance by compositions)

    def params(self) -> dict[str, ParamValue]:
        """The parameters a receiver needs to decode this codec's payloads."""
        return {}

    @property
    def spec(self) -> CodecSpec:
        return CodecSpec.of(self.name, **self.params())

    @abstractmethod
    def encode(self, vector: Tensor) -> Encoded:
        """Compress a 1-D float tensor."""

    @abstractmethod
    def decode(self, encoded: Encoded) -> Tensor:
        """Reconstruct a float32 ``Tensor[dim]``; raise ``CodecError`` on malformed input."""


class IdentityCodec(Codec):
    """No compression: float32 little-endian, 4 bytes per coordinate."""

    name = "identity"

    def encode(self, vector: Tensor) -> Encoded:
        return Encoded(self.name, int(vector.shape[0]), vector_bytes(vector))

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"identity: payload was made by codec {encoded.codec!r}")
        if len(encoded.payload) != 4 * encoded.dim:
            raise CodecError(
                f"identity: payload has {len(encoded.payload)} bytes, expected {4 * encoded.dim}"
            )
        arr = np.frombuffer(encoded.payload, dtype="<f4").copy()
        return torch.from_numpy(arr)
