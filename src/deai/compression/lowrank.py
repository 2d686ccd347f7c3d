"""PowerSGD low-rank compression, per layer (Vogels et al. 2019, "PowerSGD: Practical
low-rank gradient compression for distributed optimization").

The flat vector is cut into layers by ``shapes`` (``parameters_to_vector`` order). Each
layer with two or more dimensions is viewed as a matrix ``M [n, m]`` (``m`` = product of
the trailing dimensions) and approximated by one step of subspace (power) iteration::

    P = M Q;  P = orth(P);  Q = M^T P;  M ~ P Q^T          (P [n, r], Q [m, r])

``Q`` starts from a seeded Gaussian and, with ``warm_start`` (the paper's default), from the
previous call's ``Q`` for that layer, so repeated calls refine the subspace. The estimate
is biased; the paper pairs it with error feedback. Layers that are 1-D, or where
``r (n + m) >= n m`` (no saving), are sent as raw fp32.

Wire layout, layer by layer in ``shapes`` order: either ``n*m`` fp32 (raw) or ``n*r``
fp32 of ``P`` then ``m*r`` fp32 of ``Q`` (row-major, little-endian). The layout follows
from ``shapes`` and ``rank``, which both ends know, so the payload length is checked
exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded, ParamValue
from deai.compression.bits import Reader, unpack_floats
from deai.errors import CodecError, ConfigError


@dataclass(frozen=True)
class _Layer:
    start: int  # offset in the flat vector
    rows: int  # n
    cols: int  # m (1 for a 1-D parameter)
    rank: int  # r; 0 means sent raw

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def wire_floats(self) -> int:
        return self.size if self.rank == 0 else self.rank * (self.rows + self.cols)


def _plan(shapes: tuple[tuple[int, ...], ...], rank: int) -> tuple[_Layer, ...]:
    layers, start = [], 0
    for shape in shapes:
        if any(s < 1 for s in shape):
            raise ConfigError(f"powersgd: layer shape {shape} has a non-positive dimension")
        size = math.prod(shape)
        if len(shape) >= 2:
            n, m = shape[0], size // shape[0]
            r = min(rank, n, m)
            r = 0 if r * (n + m) >= n * m else r
        else:
            n, m, r = size, 1, 0
        layers.append(_Layer(start, n, m, r))
        start += size
    return tuple(layers)


class PowerSGD(Codec):
    """Rank-``rank`` PowerSGD over a flat vector made of layers of the given shapes."""

    name = "powersgd"

    def __init__(
        self,
        shapes: tuple[tuple[int, ...], ...],
        rank: int = 4,
        seed: int = 0,
        warm_start: bool = True,
    ) -> None:
        if not shapes:
            raise ConfigError("powersgd: shapes must list the model's parameter shapes")
        if rank < 1:
            raise ConfigError(f"powersgd: rank must be >= 1, got {rank}")
        self.rank = rank
        self.layers = _plan(tuple(tuple(s) for s in shapes), rank)
        self.dim = sum(layer.size for layer in self.layers)
        self.warm_start = warm_start
        self._gen = torch.Generator().manual_seed(seed)
        self._q: dict[int, Tensor] = {}

    def params(self) -> dict[str, ParamValue]:
        # the layer shapes come from the model, which both ends know; the rank fixes the rest
        return {"rank": self.rank}

    def payload_size(self) -> int:
        return 4 * sum(layer.wire_floats for layer in self.layers)

    def _initial_q(self, i: int, layer: _Layer) -> Tensor:
        if self.warm_start and i in self._q:
            return self._q[i]
        return torch.randn(layer.cols, layer.rank, generator=self._gen, dtype=torch.float64)

    def encode(self, vector: Tensor) -> Encoded:
        if vector.dim() != 1 or vector.numel() != self.dim:
            shape = tuple(vector.shape)
            raise CodecError(f"powersgd: expected a vector of {self.dim}, got {shape}")
        v = vector.detach().to(torch.float64).cpu()
        parts: list[bytes] = []
        for i, layer in enumerate(self.layers):
            block = v[layer.start : layer.start + layer.size]
            if layer.rank == 0:
                parts.append(block.numpy().astype("<f4").tobytes())
                continue
            mat = block.reshape(layer.rows, layer.cols)  # [n, m]
            p = torch.linalg.qr(mat @ self._initial_q(i, layer)).Q  # [n, r], orthonormal
            q = mat.T @ p  # [m, r]
            self._q[i] = q
            parts.append(p.numpy().astype("<f4").tobytes() + q.numpy().astype("<f4").tobytes())
        return Encoded(self.name, self.dim, b"".join(parts))

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"powersgd: payload was made by codec {encoded.codec!r}")
        if encoded.dim != self.dim:
            raise CodecError(f"powersgd: dim {encoded.dim} does not match shapes ({self.dim})")
        if len(encoded.payload) != self.payload_size():
            raise CodecError(
                f"powersgd: payload has {len(encoded.payload)} bytes, "
                f"expected {self.payload_size()}"
            )
        reader = Reader(encoded.payload, self.name)
        out = np.empty(self.dim, dtype=np.float32)
        for layer in self.layers:
            n = layer.wire_floats
            flat = unpack_floats(reader.take(4 * n), n, half=False)
            if layer.rank == 0:
                out[layer.start : layer.start + layer.size] = flat
                continue
            split = layer.rows * layer.rank
            p = flat[:split].reshape(layer.rows, layer.rank)  # [n, r]
            q = flat[split:].reshape(layer.cols, layer.rank)  # [m, r]
            out[layer.start : layer.start + layer.size] = (p @ q.T).reshape(-1)
        reader.finish()
        return torch.from_numpy(out)
