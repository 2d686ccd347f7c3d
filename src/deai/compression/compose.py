"""Sparsify, then quantize the kept values (CocktailSGD, Wang et al. 2023; SparseLoCo,
Sarfi et al. 2025, which pairs top-k with 2-bit values and error feedback).

:class:`SparseThenQuantize` runs a sparsifier (top-k or random-k) and hands the ``k`` kept
values, as a dense ``k``-vector, to a value codec (stochastic uniform, QSGD or scaled
sign). The reconstruction error splits into the dropped mass and the quantization error
of the kept values: ``||x - C(x)|| <= ||x - S(x)|| + ||v - Q(v)||``.

Wire layout: the sparsifier's index block (``k x ceil(log2 d)`` bits, byte-padded), then
the value codec's payload for a vector of length ``k``. Both lengths follow from ``d``
and the configuration, so the decoder checks them exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded, ParamValue
from deai.compression.bits import Reader
from deai.compression.sparse import SparseCodec
from deai.errors import CodecError


class SparseThenQuantize(Codec):
    """``sparsifier`` picks the coordinates, ``values`` encodes what they hold. The name
    says both (``topk_quantize``, ``randk_quantize``, ``topk_qsgd``...), so two different
    compositions never send the same codec name."""

    def __init__(self, sparsifier: SparseCodec, values: Codec) -> None:
        self.sparsifier = sparsifier
        self.values = values
        self.name = f"{sparsifier.name}_{values.name}"

    def params(self) -> dict[str, ParamValue]:
        return {"ratio": self.sparsifier.ratio, **self.values.params()}

    def encode(self, vector: Tensor) -> Encoded:
        idx, kept = self.sparsifier.sparsify(vector)
        dim = vector.numel()
        inner = self.values.encode(kept)
        return Encoded(self.name, dim, self.sparsifier.pack_indices(idx, dim) + inner.payload)

    def decode(self, encoded: Encoded) -> Tensor:
        if encoded.codec != self.name:
            raise CodecError(f"{self.name}: payload was made by codec {encoded.codec!r}")
        dim = encoded.dim
        if dim < 1:
            raise CodecError(f"{self.name}: dimension must be positive, got {dim}")
        reader = Reader(encoded.payload, self.name)
        idx = self.sparsifier.unpack_indices(reader, dim)
        kept = self.values.decode(Encoded(self.values.name, idx.numel(), reader.rest()))
        out = torch.zeros(dim, dtype=torch.float32)
        out[idx] = kept
        return out
