"""Parameters as one flat vector.

A model's trainable state travels as ``Tensor[d]`` in ``parameters_to_vector`` order, so
aggregators, codecs, secure aggregation and hashing all see the same thing. ``FlatModel``
runs a module *functionally* from such a vector, which lets the trainer ``vmap`` one
computation over a stack ``Tensor[n, d]`` of many providers' parameters.

A module says what it computes through two optional attributes, so no plane below needs
to know its class: ``deai_task`` (a :class:`TaskName`; classification if absent) and
``deai_vmap`` (``False`` for modules that ``torch.func.vmap`` cannot batch, such as
transformers models; the trainer then runs requests one by one through the same step).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from enum import StrEnum

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector


class TaskName(StrEnum):
    CLASSIFICATION = "classification"  # logits [B, C] against labels y [B]
    CAUSAL_LM = "causal_lm"  # token windows x [B, T + 1]; logits [B, T, V] of x[:, 1:]


class FlatModel:
    """A module plus the bookkeeping to run it from a flat parameter vector."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        # functional_call swaps the module's tensors while it runs: one caller at a time
        # (a deployed node trains in a worker thread while its loop thread evaluates)
        self.lock = threading.RLock()
        self.task = TaskName(getattr(module, "deai_task", TaskName.CLASSIFICATION))
        self.vmappable = bool(getattr(module, "deai_vmap", True))
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dim = sum(self.numels)
        # buffers (e.g. BatchNorm statistics) are not trained state and do not travel
        self.buffers = {n: b.detach().clone() for n, b in module.named_buffers()}

    def initial_vector(self) -> Tensor:
        with self.lock:
            return (
                parameters_to_vector([p for p in self.module.parameters() if p.requires_grad])
                .detach()
                .clone()
            )

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        chunks = torch.split(flat, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        """``flat: [d]``, ``x: [B, *shape]`` -> logits ``[B, classes]`` (``[B, T, V]``)."""
        params = self.unflatten(flat)
        with self.lock:
            out: Tensor = functional_call(self.module, (params, self.buffers), (x,))
        return out

    def load_into_module(self, flat: Tensor) -> nn.Module:
        with self.lock:
            torch.nn.utils.vector_to_parameters(
                flat.detach().clone(), [p for p in self.module.parameters() if p.requires_grad]
            )
        return self.module


_LITTLE = sys.byteorder == "little"


def vector_bytes(flat: Tensor) -> bytes:
    """Canonical bytes of a parameter vector: float32 little-endian."""
    t = flat.detach()
    if _LITTLE and t.dtype is torch.float32 and t.device.type == "cpu":
        return t.contiguous().numpy().tobytes()  # already "<f4": one copy, not two
    return t.to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()


# the last few vectors hashed, by content: in a simulation every provider of a round checks
# the hash of the same global model (comparing bytes is 25x faster than sha256)
_HASHED: list[tuple[bytes, str]] = []
_HASHED_KEEP = 4
_HASHED_MAX_BYTES = 1 << 22  # larger vectors are hashed every time, never kept


def vector_hash(flat: Tensor) -> str:
    """sha256 hex of the canonical bytes: the name of a model or update."""
    return bytes_hash(vector_bytes(flat))


def bytes_hash(data: bytes) -> str:
    """sha256 hex of canonical vector bytes: ``vector_hash(vector_from_bytes(data, d))``
    without decoding them (float32 little-endian bytes round-trip bit for bit)."""
    if len(data) > _HASHED_MAX_BYTES:
        return hashlib.sha256(data).hexdigest()
    for blob, digest in _HASHED:
        if blob is data or blob == data:  # the same bytes: the same digest
            return digest
    digest = hashlib.sha256(data).hexdigest()
    _HASHED.insert(0, (data, digest))
    del _HASHED[_HASHED_KEEP:]
    return digest


def vector_from_bytes(data: bytes, dim: int) -> Tensor:
    """Inverse of :func:`vector_bytes`, checking the length first (peer bytes)."""
    from deai.errors import InvalidMessage

    if len(data) != 4 * dim:
        raise InvalidMessage(f"parameter blob has {len(data)} bytes, expected {4 * dim}")
    import numpy as np

    return torch.from_numpy(np.frombuffer(data, dtype="<f4").copy())
