"""Fixed-point encoding of float updates into Z_{2^k}, and dense bit packing.

A float coordinate ``x`` is clipped to ``[-clip, clip]`` and mapped to an unsigned integer
``q = round((x + clip) / (2 clip) * (2^b - 1))`` in ``[0, 2^b - 1]`` (``b = value_bits``).
The sum of ``n`` such integers is at most ``n (2^b - 1) < 2^(b + ceil(log2 n))``, so with
modulus ``2^k``, ``k = b + ceil(log2 n)``, the sum of any subset of at most ``n`` clients
never wraps: **no overflow is possible by construction** and the modular sum *is* the
integer sum. Decoding a sum of ``m`` encodings subtracts ``m * clip``.

Error: round-to-nearest moves each coordinate by at most ``clip / (2^b - 1)`` (half a
step of width ``2 clip / (2^b - 1)``), so a sum of ``m`` has error at most
``m * clip / (2^b - 1)`` per coordinate, plus whatever clipping to ``[-clip, clip]`` cut.
``k`` must fit the uint32 arithmetic used for masks: ``b + ceil(log2 n) <= 32``.

Packing: ``k``-bit words are packed little-endian, densely (``ceil(d k / 8)`` bytes), so
the wire cost of a masked vector is exactly ``k / 16`` times a plain 16-bit update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from deai.errors import CodecError, ConfigError

U32 = npt.NDArray[np.uint32]


def modulus_bits(value_bits: int, n_clients: int) -> int:
    """Bits of the modulus that make a sum of ``n_clients`` encodings overflow-free."""
    return value_bits + max(0, math.ceil(math.log2(max(n_clients, 1))))


@dataclass(frozen=True)
class FixedPoint:
    clip: float  # coordinates are clipped to [-clip, clip] before encoding
    value_bits: int  # b: bits of one encoded coordinate
    bits: int  # k: bits of the modulus 2^k (>= value_bits + ceil(log2 n))

    def __post_init__(self) -> None:
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"fixed point clip must be finite and > 0, got {self.clip}")
        if not 2 <= self.value_bits <= self.bits <= 32:
            raise ConfigError(
                f"need 2 <= value_bits ({self.value_bits}) <= bits ({self.bits}) <= 32"
            )

    @property
    def mask(self) -> np.uint32:
        return np.uint32((1 << self.bits) - 1)

    @property
    def step(self) -> float:
        return 2.0 * self.clip / ((1 << self.value_bits) - 1)

    def max_clients(self) -> int:
        """Largest number of summands that cannot overflow 2^bits."""
        return ((1 << self.bits) - 1) // ((1 << self.value_bits) - 1)

    def encode(self, vector: Tensor) -> U32:
        x = vector.detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(x).all():
            raise ConfigError("cannot encode non-finite values")
        x = np.clip(x, -self.clip, self.clip)
        q = np.rint((x + self.clip) / self.step)
        return q.astype(np.uint32)

    def decode_sum(self, total: U32, count: int) -> Tensor:
        """Float sum of ``count`` encoded vectors from their integer sum mod 2^bits."""
        if count > self.max_clients():
            raise ConfigError(f"{count} summands can overflow {self.bits} bits")
        s = total.astype(np.float64) * self.step - count * self.clip
        return torch.from_numpy(s.astype(np.float32))


def pack(words: U32, bits: int) -> bytes:
    """Pack the low ``bits`` of each uint32 densely, little-endian bit order."""
    if bits == 32:
        return words.astype("<u4").tobytes()
    as_bytes = words.astype("<u4").view(np.uint8)
    b = np.unpackbits(as_bytes, bitorder="little").reshape(-1, 32)[:, :bits]
    return np.packbits(b.reshape(-1), bitorder="little").tobytes()


def unpack(payload: bytes, bits: int, dim: int) -> U32:
    """Inverse of :func:`pack`; raises ``CodecError`` if the length does not match."""
    expected = packed_size(bits, dim)
    if len(payload) != expected:
        raise CodecError(f"packed vector has {len(payload)} bytes, expected {expected}")
    if bits == 32:
        return np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    raw = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")
    b = raw[: dim * bits].reshape(dim, bits)
    full = np.zeros((dim, 32), dtype=np.uint8)
    full[:, :bits] = b
    return np.packbits(full.reshape(-1), bitorder="little").view("<u4").astype(np.uint32)


def packed_size(bits: int, dim: int) -> int:
    return (dim * bits + 7) // 8
