"""Bit packing for codec payloads.

Every codec writes unsigned integers of a fixed width ``bits`` (1 to 32) back to back,
least significant bit first, into ``ceil(count * bits / 8)`` bytes (the last byte is
zero-padded). Floats are little-endian IEEE (``<f4`` or ``<f2``). These helpers validate
lengths so that a decoder fed garbage raises :class:`CodecError` instead of crashing.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from deai.errors import CodecError

MAX_BITS = 32


def index_bits(dim: int) -> int:
    """Bits needed to address ``dim`` coordinates: ``ceil(log2 dim)``, at least 1."""
    if dim < 1:
        raise CodecError(f"bits: dimension must be positive, got {dim}")
    return max(1, (dim - 1).bit_length())


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` integers of ``bits`` bits each."""
    return math.ceil(count * bits / 8)


def pack_uint(values: NDArray[np.integer], bits: int) -> bytes:
    """Pack non-negative integers ``< 2**bits`` into ``packed_size(len, bits)`` bytes."""
    if not 1 <= bits <= MAX_BITS:
        raise CodecError(f"bits: width must be in [1, {MAX_BITS}], got {bits}")
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if v.size and int(v.max()) >= (1 << bits):
        raise CodecError(f"bits: value {int(v.max())} does not fit in {bits} bits")
    if bits == 8:
        return v.astype(np.uint8).tobytes()
    shifts = np.arange(bits, dtype=np.uint64)
    bitmat = ((v[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)  # [n, bits]
    return np.packbits(bitmat.reshape(-1), bitorder="little").tobytes()


def unpack_uint(data: bytes, bits: int, count: int) -> NDArray[np.int64]:
    """Inverse of :func:`pack_uint`; ``data`` must be exactly ``packed_size(count, bits)``."""
    if not 1 <= bits <= MAX_BITS:
        raise CodecError(f"bits: width must be in [1, {MAX_BITS}], got {bits}")
    expected = packed_size(count, bits)
    if len(data) != expected:
        raise CodecError(f"bits: {len(data)} bytes for {count} x {bits}-bit, expected {expected}")
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return raw.astype(np.int64)
    bitvec = np.unpackbits(raw, bitorder="little")[: count * bits]
    bitmat = bitvec.reshape(count, bits).astype(np.int64)  # [n, bits]
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))  # [bits]
    return bitmat @ weights


def pack_floats(values: NDArray[np.floating], half: bool) -> bytes:
    """Little-endian fp32, or fp16 clipped to its finite range (so no value becomes inf)."""
    v = np.asarray(values, dtype=np.float64)
    if half:
        fmax = float(np.finfo(np.float16).max)
        return np.clip(v, -fmax, fmax).astype("<f2").tobytes()
    return v.astype("<f4").tobytes()


def unpack_floats(data: bytes, count: int, half: bool) -> NDArray[np.float32]:
    """Inverse of :func:`pack_floats`; checks the exact length."""
    width = 2 if half else 4
    if len(data) != width * count:
        raise CodecError(f"bits: {len(data)} bytes for {count} floats, expected {width * count}")
    return np.frombuffer(data, dtype="<f2" if half else "<f4").astype(np.float32)


class Reader:
    """Consume a payload front to back; any overrun or leftover is a ``CodecError``."""

    def __init__(self, data: bytes, codec: str) -> None:
        self._data = data
        self._pos = 0
        self._codec = codec

    def take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise CodecError(
                f"{self._codec}: payload too short ({len(self._data)} bytes, "
                f"needed {self._pos + n})"
            )
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def rest(self) -> bytes:
        """Everything not yet consumed (for a nested codec that checks its own length)."""
        return self.take(len(self._data) - self._pos)

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise CodecError(
                f"{self._codec}: payload has {len(self._data) - self._pos} trailing bytes"
            )
