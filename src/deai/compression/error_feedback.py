"""Error feedback (EF, "memory"): compress what you meant to send plus what you failed to
send last time (Seide et al. 2014; Stich et al. 2018; Karimireddy et al. 2019).

For a sender with residual ``e`` (initially 0) and update ``g``::

    c = C(g + e)          # what goes on the wire
    e = (g + e) - D(c)    # what the codec dropped, carried to the next round

With a contractive codec (``||x - C(x)||^2 <= (1 - delta) ||x||^2``: top-k, random-k,
scaled sign, PowerSGD) the residual stays bounded and the sum of decoded messages tracks
the sum of true updates; this is what lets top-k at 1% converge. Residuals live with the
sender (they never cross the wire); one :class:`ErrorFeedback` object may serve many
senders in a simulation, keyed by ``sender``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded
from deai.errors import CodecError


class ErrorFeedback:
    """Wrap ``codec`` with one residual per sender."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._residual: dict[str, Tensor] = {}

    def encode(self, vector: Tensor, sender: str = "self") -> Encoded:
        """Encode ``vector + residual[sender]`` and keep what the codec dropped."""
        v = vector.detach().to(torch.float32).cpu()
        prev = self._residual.get(sender)
        if prev is not None and prev.shape != v.shape:
            raise CodecError(
                f"error_feedback: sender {sender!r} changed dim {prev.numel()} -> {v.numel()}"
            )
        corrected = v if prev is None else v + prev
        encoded = self.codec.encode(corrected)
        self._residual[sender] = corrected - self.codec.decode(encoded)
        return encoded

    def decode(self, encoded: Encoded) -> Tensor:
        return self.codec.decode(encoded)

    def residual(self, sender: str = "self") -> Tensor | None:
        """The carried error of ``sender`` (``None`` before its first message)."""
        r = self._residual.get(sender)
        return None if r is None else r.clone()

    def reset(self, sender: str | None = None) -> None:
        """Forget one sender's residual, or all of them."""
        if sender is None:
            self._residual.clear()
        else:
            self._residual.pop(sender, None)
