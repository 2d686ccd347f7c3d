"""Sparsification codecs: top-k and random-k.

Top-k keeps the ``k`` coordinates of largest magnitude (Stich et al. 2018, "Sparsified SGD
with memory"; Lin et al. 2018, "Deep Gradient Compression"); random-k keeps ``k``
coordinates drawn uniformly without replacement. Both are *contractive*:
``||x - C(x)||^2 <= (1 - k/d) ||x||^2`` (for random-k in expectation), which is what makes
them converge under error feedback (see :mod:`deai.compression.error_feedback`). Neither
is unbiased; random-k values are sent unscaled (multiply by ``d/k`` yourself if you need an
unbiased estimator without error feedback).

Wire layout (``k = min(dim, max(1, ceil(ratio * dim)))`` is known to both ends from the
codec configuration, so it is not sent)::

    indices : k x ceil(log2 dim) bits, strictly increasing, packed LSB-first, byte-padded
    values  : k x fp32 (or fp16, clipped to its finite range), little-endian

Decoding checks the exact length, that every index is ``< dim`` and that indices are
strictly increasing (so no coordinate is written twice).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded, ParamValue
from deai.compression.bits import (
    Reader,
    index_bits,
    pack_floats,
    pack_uint,
    packed_size,
    unpack_floats,
    unpack_uint,
)
from deai.errors import CodecError, ConfigError


class ValueDType(StrEnum):
    """How a sparse codec writes its kept values."""

    FP32 = "fp32"
    FP16 = "fp16"


def _check_vector(name: str, vector: Tensor) -> Tensor:
    if vector.dim() != 1 or vector.numel() == 0:
        raise CodecError(f"{name}: expected a non-empty 1-D tensor, got {tuple(vector.shape)}")
    return vector.detach().to(torch.float32).cpu()


class SparseCodec(Codec):
    """Shared machinery of the sparsifiers: pick indices, pack them, pack the values."""

    def __init__(self, ratio: float, value_dtype: ValueDType = ValueDType.FP32) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"{self.name}: ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio
        try:  # a job spec read from JSON passes the plain string
            self.value_dtype = ValueDType(value_dtype)
        except ValueError:
            raise ConfigError(f"{self.name}: value_dtype {value_dtype!r}") from None

    def params(self) -> dict[str, ParamValue]:
        return {"ratio": self.ratio, "value_dtype": self.value_dtype.value}

    def k_for(self, dim: int) -> int:
        """How many coordinates survive in a vector of length ``dim``."""
        return min(dim, max(1, math.ceil(self.ratio * dim)))

    @abstractmethod
    def select(self, vector: Tensor) -> Tensor:
        """Indices to keep (``LongTensor[k]``, any order)."""

    def sparsify(self, vector: Tensor) -> tuple[Tensor, Tensor]:
        """Sorted kept indices and their float32 values."""
        v = _check_vector(self.name, vector)
        idx = torch.sort(self.select(v)).values
        return idx, v[idx]

    def pack_indices(self, idx: Tensor, dim: int) -> bytes:
        return pack_uint(idx.numpy(), index_bits(dim))

    def unpack_indices(self, reader: Reader, dim: int) -> Tensor:
        k, bits = self.k_for(dim), index_bits(dim)
        idx = unpack_uint(reader.take(packed_size(k, bits)), bits, k)
        if idx.size and int(idx.max()) >= dim:
            raise CodecError(f"{self.name}: index {int(idx.max())} out of range for dim {dim}")
        if idx.size > 1 and not bool(np.all(np.diff(idx) > 0)):
            raise CodecError(f"{self.name}: indices are not strictly increasing")
        return torch.from_numpy(idx)

    def encode(self, vector: Tensor) -> Encoded:
        idx, values = self.sparsify(vector)
        dim = vector.numel()
        half = self.value_dtype is ValueDType.FP16
        payload = self.pack_indices(idx, dim) + pack_floats(values.numpy(), half)
        return Encoded(self.name, dim, payload)

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"{self.name}: payload was made by codec {encoded.codec!r}")
        dim = _check_dim(self.name, encoded.dim)
        reader = Reader(encoded.payload, self.name)
        idx = self.unpack_indices(reader, dim)
        half = self.value_dtype is ValueDType.FP16
        k = idx.numel()
        values = unpack_floats(reader.take(k * (2 if half else 4)), k, half)
        reader.finish()
        out = torch.zeros(dim, dtype=torch.float32)
        out[idx] = torch.from_numpy(values)
        return out


def _check_dim(name: str, dim: int) -> int:
    if dim < 1:
        raise CodecError(f"{name}: dimension must be positive, got {dim}")
    return dim


class TopK(SparseCodec):
    """Keep the ``ceil(ratio * d)`` largest-magnitude coordinates (ties: lowest index)."""

    name = "topk"

    def select(self, vector: Tensor) -> Tensor:
        k = self.k_for(vector.numel())
        # A stable sort keeps the choice deterministic when magnitudes tie.
        order = torch.sort(vector.abs(), descending=True, stable=True).indices
        return order[:k]


class RandomK(SparseCodec):
    """Keep ``ceil(ratio * d)`` coordinates drawn uniformly without replacement.

    The draw comes from a generator seeded once from ``seed``, so the sequence of masks
    is reproducible; the indices are still sent, so the decoder keeps no state.
    """

    name = "randk"

    def __init__(
        self, ratio: float, value_dtype: ValueDType = ValueDType.FP32, seed: int = 0
    ) -> None:
        super().__init__(ratio, value_dtype)
        self._gen = torch.Generator().manual_seed(seed)

    def select(self, vector: Tensor) -> Tensor:
        k = self.k_for(vector.numel())
        return torch.randperm(vector.numel(), generator=self._gen)[:k]


class TopKEliasFano(TopK):
    """Top-k whose sorted indices are Elias-Fano coded (Elias 1974; Fano 1971) instead of
    plainly bit-packed: ``k (2 + log2(d/k))`` bits instead of ``k ceil(log2 d)``.

    With ``L = floor(log2(d / k))`` low bits per index, the layout is::

        upper : k + ((d - 1) >> L) + 1 bits, one 1 at position (index >> L) + i for the
                i-th index, LSB-first, byte-padded with zeros
        lower : k x L bits, each index's low L bits (``pack_uint``), byte-padded

    Both lengths follow from ``d`` and ``k``, so the payload length is still exact; the
    decoder also checks the upper block holds exactly ``k`` ones, that both blocks' padding
    is zero (one encoding per index set), and (as plain top-k) that indices are ``< d``
    and strictly increasing.
    """

    name = "topk_eliasfano"

    @staticmethod
    def _layout(k: int, dim: int) -> tuple[int, int]:
        """``(L, bits of the upper block)`` for ``k`` indices below ``dim``."""
        low = max(0, (dim // k).bit_length() - 1)
        return low, k + ((dim - 1) >> low) + 1

    def pack_indices(self, idx: Tensor, dim: int) -> bytes:
        v = idx.numpy().astype(np.int64)
        low, nbits = self._layout(v.size, dim)
        upper = np.zeros(packed_size(nbits, 1) * 8, dtype=np.uint8)
        upper[(v >> low) + np.arange(v.size)] = 1
        out = np.packbits(upper, bitorder="little").tobytes()
        if low:
            out += pack_uint(v & ((1 << low) - 1), low)
        return out

    def unpack_indices(self, reader: Reader, dim: int) -> Tensor:
        k = self.k_for(dim)
        low, nbits = self._layout(k, dim)
        raw = np.frombuffer(reader.take(packed_size(nbits, 1)), dtype=np.uint8)
        bitvec = np.unpackbits(raw, bitorder="little")
        if bitvec[nbits:].any():
            raise CodecError(f"{self.name}: non-zero padding in the upper index block")
        ones = np.flatnonzero(bitvec).astype(np.int64)
        if ones.size != k:
            raise CodecError(f"{self.name}: upper index block has {ones.size} ones, expected {k}")
        idx = (ones - np.arange(k, dtype=np.int64)) << low
        if low:
            block = reader.take(packed_size(k, low))
            if np.unpackbits(np.frombuffer(block, dtype=np.uint8), bitorder="little")[
                k * low :
            ].any():
                raise CodecError(f"{self.name}: non-zero padding in the lower index block")
            idx |= unpack_uint(block, low, k)
        if int(idx.max()) >= dim:
            raise CodecError(f"{self.name}: index {int(idx.max())} out of range for dim {dim}")
        if idx.size > 1 and not bool(np.all(np.diff(idx) > 0)):
            raise CodecError(f"{self.name}: indices are not strictly increasing")
        return torch.from_numpy(idx)
