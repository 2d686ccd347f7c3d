"""Cheating servers, injected as a hook into an honest :class:`~deai.swarm.server.BlockServer`.

Each strategy saves compute or memory and returns something plausible:

=================  ==========================================================================
strategy           what the server returns instead of the span's output
=================  ==========================================================================
``skip_layers``    runs only the first half of the requested layers (at least one)
``quantized``      runs a copy of its layers with every weight rounded to int8 (per-tensor,
                   symmetric): a quarter of the memory, the classic "cheaper model"
``stale``          the previous answer of the same shape (the first one is honest)
``random``         Gaussian noise with each row's norm equal to the input row's norm
``identity``       the input unchanged (all layers skipped)
=================  ==========================================================================

``rate`` is the share of calls on which it cheats (drawn from its own seeded RNG), so
a cheater that lies rarely can be measured too. The hook sees exactly what the honest
code path sees and nothing else (no knowledge of which calls are checked).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor, nn
from transformers import DynamicCache

from deai.swarm.blocks import Span


class Strategy(StrEnum):
    SKIP_LAYERS = "skip_layers"
    QUANTIZED = "quantized"
    STALE = "stale"
    RANDOM = "random"
    IDENTITY = "identity"


def quantize_int8_(module: nn.Module) -> None:
    """Round every weight matrix of ``module`` to int8 in place (per tensor, symmetric)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() >= 2:
                scale = p.abs().max() / 127.0
                if scale > 0:
                    p.copy_(torch.round(p / scale).clamp(-127, 127) * scale)


@dataclass
class Cheater:
    strategy: Strategy
    rate: float = 1.0  # share of calls it cheats on
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._last: dict[tuple[int, ...], Tensor] = {}
        self._quantized: dict[int, nn.Module] = {}
        self.cheated = 0  # calls answered dishonestly

    def _qspan(self, span: Span) -> Span:
        layers = []
        for i, layer in enumerate(span.layers):
            b = span.start + i
            if b not in self._quantized:
                q = copy.deepcopy(layer)
                quantize_int8_(q)
                self._quantized[b] = q
            layers.append(self._quantized[b])
        return Span(span.config, layers, span.rotary_emb, span.start)

    def run(
        self, span: Span, hidden: Tensor, first_position: int, cache: DynamicCache | None
    ) -> Tensor:
        """The (possibly dishonest) output of ``span`` on ``hidden``."""
        if self._rng.random() >= self.rate:
            out = span(hidden, first_position, cache)
        else:
            self.cheated += 1
            out = self._cheat(span, hidden, first_position, cache)
        self._last[tuple(out.shape)] = out.detach().clone()
        return out

    def _cheat(
        self, span: Span, hidden: Tensor, first_position: int, cache: DynamicCache | None
    ) -> Tensor:
        s = self.strategy
        if s is Strategy.SKIP_LAYERS:
            keep = max(1, (span.end - span.start) // 2)
            return span.sub(span.start, span.start + keep)(hidden, first_position, cache)
        if s is Strategy.QUANTIZED:
            return self._qspan(span)(hidden, first_position, cache)
        if s is Strategy.STALE:
            old = self._last.get(tuple(hidden.shape))
            return old if old is not None else span(hidden, first_position, cache)
        if s is Strategy.RANDOM:
            noise = torch.from_numpy(self._rng.standard_normal(tuple(hidden.shape))).float()
            norm = hidden.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
            return noise * norm
        return hidden.clone()
