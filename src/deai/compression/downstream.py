"""Downstream compression: the global model broadcast as compressed deltas, with the
server's error fed back (as bidirectional schemes do: DoubleSqueeze, Tang et al. 2019;
Artemis, Philippenko & Dieuleveut 2020).

The server keeps ``x_hat``, the model every receiver of the last broadcast holds. Each
round it sends ``c = C(theta - x_hat)`` and both sides set ``x_hat <- x_hat + D(c)``. What
the codec dropped, ``theta - x_hat``, is never lost: it is inside next round's
``theta - x_hat`` and goes out then. This *is* error feedback, with the residual
``e = theta - x_hat`` kept implicitly by the tracked model rather than in a separate
buffer, so the broadcast never drifts from the server's model by more than one round's
compression error (bounded for a contractive codec).

Receivers apply ``D(c)`` to their copy of ``x_hat``. A receiver whose copy is not the
sender's base (it missed a round, or joined late) cannot use the delta: the sender
names the base by hash and sends such receivers the whole model instead, and a receiver
checks the hash of what it rebuilt. The initial ``x_hat`` is the spec's public initial
model, which every party builds for itself, so nothing is sent to start.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded
from deai.errors import CodecError


class Broadcaster:
    """The sender's side: the tracked model ``x_hat`` and the codec of its deltas."""

    def __init__(self, codec: Codec, initial: Tensor) -> None:
        if initial.dim() != 1:
            raise CodecError("downstream: the model must be a flat vector")
        self.codec = codec
        self.wire = codec.spec.to_wire()  # what the message names as its codec
        self.model = initial.detach().to(torch.float32).clone()

    def advance(self, params: Tensor) -> Encoded | None:
        """Encode ``params - x_hat`` and move ``x_hat`` by what was sent; ``None`` (and
        ``x_hat`` set to ``params``: everyone gets the whole model) if it cannot be
        encoded, e.g. non-finite values."""
        p = params.detach().to(torch.float32)
        if p.shape != self.model.shape:
            raise CodecError(f"downstream: model of shape {tuple(p.shape)}, expected {self.dim}")
        try:
            enc = self.codec.encode(p - self.model)
            self.model = apply_delta(self.codec, self.model, enc.payload)
        except CodecError:
            self.model = p.clone()
            return None
        return enc

    @property
    def dim(self) -> int:
        return int(self.model.numel())

    def residual(self, params: Tensor) -> Tensor:
        """What the broadcast still owes: ``theta - x_hat``."""
        return params.detach().to(torch.float32) - self.model


def apply_delta(codec: Codec, base: Tensor, payload: bytes) -> Tensor:
    """``base + D(payload)``; raises ``CodecError`` on a malformed or non-finite payload."""
    delta = codec.decode(Encoded(codec.name, int(base.numel()), payload))
    if delta.shape != base.shape or not bool(torch.isfinite(delta).all()):
        raise CodecError("downstream: decoded delta has the wrong shape or non-finite values")
    return base + delta
