"""Quantization codecs: stochastic uniform b-bit, QSGD, scaled sign.

All three split the vector into buckets of ``bucket_size`` coordinates (``0``: one bucket
for the whole vector) and send one or two fp32 statistics per bucket followed by a
fixed-width code per coordinate, packed LSB-first (see :mod:`deai.compression.bits`).

* :class:`StochasticUniform` (Suresh et al. 2017, "Distributed mean estimation with
  limited communication"): per bucket ``lo = min``, ``step = (max - min) / (2^b - 1)``;
  each coordinate is rounded to ``lo + l * step`` with ``l in [0, 2^b - 1]`` chosen
  stochastically, so ``E[decode(x)] = x`` and ``|decode(x)_i - x_i| <= step``.
  Layout: ``nb x (lo fp32, step fp32)`` then ``d x b`` bits.
* :class:`QSGD` (Alistarh et al. 2017): per bucket ``n = ||x_b||_2``; each coordinate
  becomes ``n * sign(x_i) * l / s`` with ``l in [0, s]`` rounded stochastically. Unbiased,
  with ``E||decode(x) - x||^2 <= min(B / s^2, sqrt(B) / s) ||x||^2`` for bucket size B.
  The paper's Elias coding is replaced by a fixed width: ``1 + bit_length(s)`` bits per
  coordinate (sign in bit 0, level above it). Layout: ``nb x n fp32`` then the codes.
* :class:`ScaledSign` (Bernstein et al. 2018 signSGD; scale as in Karimireddy et al. 2019,
  "Error feedback fixes SignSGD"): per bucket ``a = mean |x_b|``; each coordinate becomes
  ``+a`` (bit 1, ``x_i >= 0``) or ``-a`` (bit 0). Biased but contractive; use with error
  feedback. Layout: ``nb x a fp32`` then ``d`` bits.

Randomized codecs draw from a numpy generator seeded once from ``seed``: the sequence of
encodings is reproducible and decoding is stateless. Decoders check the exact length, that
statistics are finite and non-negative where they must be, and that codes are in range.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from deai.compression.base import Codec, Encoded, ParamValue
from deai.compression.bits import Reader, pack_uint, packed_size, unpack_floats, unpack_uint
from deai.errors import CodecError, ConfigError

F64 = NDArray[np.float64]


def _bucket_stat(x: F64, bucket: int, kind: str) -> F64:
    """Per-bucket statistic (``min``, ``max``, ``norm`` or ``meanabs``) of ``x``."""
    nb = math.ceil(x.size / bucket)
    padded = np.full(nb * bucket, np.nan)
    padded[: x.size] = x
    rows = padded.reshape(nb, bucket)  # [nb, bucket]
    if kind == "min":
        return np.nanmin(rows, axis=1)
    if kind == "max":
        return np.nanmax(rows, axis=1)
    if kind == "norm":
        return np.sqrt(np.nansum(rows * rows, axis=1))
    return np.nanmean(np.abs(rows), axis=1)


class BucketQuantizer(Codec):
    """Shared framing: per-bucket fp32 statistics, then fixed-width codes."""

    n_stats: int  # fp32 statistics per bucket

    def __init__(self, bucket_size: int = 0, seed: int = 0) -> None:
        if bucket_size < 0:
            raise ConfigError(f"{self.name}: bucket_size must be >= 0, got {bucket_size}")
        self.bucket_size = bucket_size
        self._rng = np.random.default_rng(seed)

    def params(self) -> dict[str, ParamValue]:
        return {"bucket_size": self.bucket_size}

    @property
    @abstractmethod
    def code_bits(self) -> int:
        """Bits per coordinate."""

    def _bucket(self, dim: int) -> int:
        return dim if self.bucket_size == 0 else min(self.bucket_size, dim)

    def _n_buckets(self, dim: int) -> int:
        return math.ceil(dim / self._bucket(dim))

    def payload_size(self, dim: int) -> int:
        """Exact bytes of the encoding of a ``dim``-vector."""
        return 4 * self.n_stats * self._n_buckets(dim) + packed_size(dim, self.code_bits)

    @abstractmethod
    def _quantize(self, x: F64, bucket: int) -> tuple[F64, NDArray[np.int64]]:
        """Return ``(stats [nb, n_stats], codes [d])``."""

    @abstractmethod
    def _dequantize(self, stats: F64, codes: NDArray[np.int64], bucket: int) -> F64:
        """Inverse of ``_quantize`` (stats already validated as finite)."""

    def encode(self, vector: Tensor) -> Encoded:
        if vector.dim() != 1 or vector.numel() == 0:
            raise CodecError(f"{self.name}: expected a non-empty 1-D tensor")
        x = vector.detach().to(torch.float64).cpu().numpy()
        if not np.all(np.isfinite(x)):
            raise CodecError(f"{self.name}: cannot quantize non-finite values")
        stats, codes = self._quantize(x, self._bucket(x.size))
        payload = stats.astype("<f4").tobytes() + pack_uint(codes, self.code_bits)
        return Encoded(self.name, x.size, payload)

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"{self.name}: payload was made by codec {encoded.codec!r}")
        dim = encoded.dim
        if dim < 1:
            raise CodecError(f"{self.name}: dimension must be positive, got {dim}")
        if len(encoded.payload) != self.payload_size(dim):
            raise CodecError(
                f"{self.name}: payload has {len(encoded.payload)} bytes, "
                f"expected {self.payload_size(dim)}"
            )
        reader = Reader(encoded.payload, self.name)
        n_st = self.n_stats * self._n_buckets(dim)
        stats = unpack_floats(reader.take(4 * n_st), n_st, half=False).astype(np.float64)
        if not np.all(np.isfinite(stats)):
            raise CodecError(f"{self.name}: non-finite bucket statistic")
        codes = unpack_uint(reader.take(packed_size(dim, self.code_bits)), self.code_bits, dim)
        reader.finish()
        out = self._dequantize(stats.reshape(-1, self.n_stats), codes, self._bucket(dim))
        return torch.from_numpy(out.astype(np.float32))


def _as_f32(stat: F64) -> F64:
    """Round to the fp32 value that goes on the wire (kept as float64 for arithmetic)."""
    return stat.astype(np.float32).astype(np.float64)


def _per_coord(stat: F64, bucket: int, dim: int) -> F64:
    return np.repeat(stat, bucket)[:dim]


class StochasticUniform(BucketQuantizer):
    """Unbiased stochastic rounding onto ``2^bits`` evenly spaced levels per bucket."""

    name = "quantize"
    n_stats = 2

    def __init__(self, bits: int = 8, bucket_size: int = 0, seed: int = 0) -> None:
        if not 1 <= bits <= 16:
            raise ConfigError(f"quantize: bits must be in [1, 16], got {bits}")
        super().__init__(bucket_size, seed)
        self.bits = bits

    def params(self) -> dict[str, ParamValue]:
        return {"bits": self.bits, "bucket_size": self.bucket_size}

    @property
    def code_bits(self) -> int:
        return self.bits

    def _quantize(self, x: F64, bucket: int) -> tuple[F64, NDArray[np.int64]]:
        top = (1 << self.bits) - 1
        lo = _bucket_stat(x, bucket, "min")
        step = (_bucket_stat(x, bucket, "max") - lo) / top
        # Round the statistics to fp32 first so encoder and decoder use the same grid.
        lo, step = _as_f32(lo), _as_f32(step)
        lo_c, step_c = _per_coord(lo, bucket, x.size), _per_coord(step, bucket, x.size)
        t = np.divide(x - lo_c, step_c, out=np.zeros_like(x), where=step_c > 0)
        levels = np.floor(t + self._rng.random(x.size))
        codes = np.clip(levels, 0, top).astype(np.int64)
        return np.stack([lo, step], axis=1), codes

    def _dequantize(self, stats: F64, codes: NDArray[np.int64], bucket: int) -> F64:
        if np.any(stats[:, 1] < 0):
            raise CodecError("quantize: negative step")
        lo_c = _per_coord(stats[:, 0], bucket, codes.size)
        step_c = _per_coord(stats[:, 1], bucket, codes.size)
        return lo_c + codes * step_c


class QSGD(BucketQuantizer):
    """QSGD with ``s`` levels per bucket norm (Alistarh et al. 2017)."""

    name = "qsgd"
    n_stats = 1

    def __init__(self, levels: int = 16, bucket_size: int = 0, seed: int = 0) -> None:
        if not 1 <= levels <= (1 << 15) - 1:
            raise ConfigError(f"qsgd: levels must be in [1, 32767], got {levels}")
        super().__init__(bucket_size, seed)
        self.levels = levels

    def params(self) -> dict[str, ParamValue]:
        return {"levels": self.levels, "bucket_size": self.bucket_size}

    @property
    def code_bits(self) -> int:
        return 1 + self.levels.bit_length()

    def _quantize(self, x: F64, bucket: int) -> tuple[F64, NDArray[np.int64]]:
        norm = _as_f32(_bucket_stat(x, bucket, "norm"))
        norm_c = _per_coord(norm, bucket, x.size)
        t = np.divide(np.abs(x) * self.levels, norm_c, out=np.zeros_like(x), where=norm_c > 0)
        level = np.clip(np.floor(t + self._rng.random(x.size)), 0, self.levels).astype(np.int64)
        sign = (x >= 0).astype(np.int64)
        return norm[:, None], (level << 1) | sign

    def _dequantize(self, stats: F64, codes: NDArray[np.int64], bucket: int) -> F64:
        norm = stats[:, 0]
        if np.any(norm < 0):
            raise CodecError("qsgd: negative norm")
        level = codes >> 1
        if codes.size and int(level.max()) > self.levels:
            raise CodecError(f"qsgd: level {int(level.max())} above s={self.levels}")
        sign = np.where(codes & 1, 1.0, -1.0)
        return _per_coord(norm, bucket, codes.size) * sign * level / self.levels


class ScaledSign(BucketQuantizer):
    """One bit per coordinate, scaled by the bucket's mean absolute value."""

    name = "sign"
    n_stats = 1

    @property
    def code_bits(self) -> int:
        return 1

    def _quantize(self, x: F64, bucket: int) -> tuple[F64, NDArray[np.int64]]:
        scale = _bucket_stat(x, bucket, "meanabs")
        return scale[:, None], (x >= 0).astype(np.int64)

    def _dequantize(self, stats: F64, codes: NDArray[np.int64], bucket: int) -> F64:
        scale = stats[:, 0]
        if np.any(scale < 0):
            raise CodecError("sign: negative scale")
        return _per_coord(scale, bucket, codes.size) * np.where(codes == 1, 1.0, -1.0)
