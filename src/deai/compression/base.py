"""The update-codec contract (after hivemind's ``compression/base.py``).

A codec turns a flat float update ``Tensor[d]`` into wire bytes and back. ``encode``
returns an :class:`Encoded` whose ``payload`` is exactly what crosses the wire, so byte
counts are exact. Decoding peer bytes never unpickles anything: payloads are raw,
documented little-endian layouts checked against ``dim``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from deai.errors import CodecError


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

    name: ClassVar[str]

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
        v = vector.detach().to(torch.float32).contiguous().cpu().numpy()
        return Encoded(self.name, int(v.shape[0]), v.astype("<f4").tobytes())

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"identity: payload was made by codec {encoded.codec!r}")
        if len(encoded.payload) != 4 * encoded.dim:
            raise CodecError(
                f"identity: payload has {len(encoded.payload)} bytes, expected {4 * encoded.dim}"
            )
        arr = np.frombuffer(encoded.payload, dtype="<f4").copy()
        return torch.from_numpy(arr)
