"""Span verification: tolerant comparison, calibration and known-answer canaries.

Comparison. Two answers for the same span on the same history are compared on the
*whole* hidden state, row by row, in the fixed-point units receipts commit to
(:func:`deai.swarm.wire.fixed_rows`, ``2^-12``). Float error in a residual stream grows
with its magnitude (hidden states of a few hundred are common), so the tolerance is
relative: a claimed row ``a`` passes against a reference row ``b`` iff::

    max_i |a_i - b_i|  <=  floor(tol_ppb * max(max_i |b_i|, 2^12) / 10^9) + slack(a)

with ``tol_ppb`` in parts per billion and ``slack`` 0 for lossless calls and
``ceil(max|a| / 254) + 1`` for int8-blockwise ones (the codec's own rounding, see
:mod:`deai.swarm.wire`). All integers: the same rule runs on chain in
``SwarmLedger.vy``, so a client never opens a dispute the contract's arithmetic would
decide otherwise.

Calibration (:func:`calibrate`): honest servers of one execution profile differ only by
the order of floating-point sums: a step computed incrementally against a KV cache vs.
the same positions recomputed in one prefix forward (what a witness does), and other
thread counts. ``calibrate`` measures the largest honest relative distance ``eps_max``
(ppb) over such pairs, on the longest spans (error accumulates over layers), and sets
``tol_ppb = max(floor, safety * eps_max)``. Cheats sit orders of
magnitude above (tests and benchmarks/swarm.py measure both sides of the margin).

Canaries: a party holding the public weights of a span computes answers for real
hidden states once (:class:`CanarySet`); the client sends them as ordinary one-call
sessions, each to a given server at most once (a repeated input could be recognised).
They catch a cheater even where no second server holds the span.

Threat model: a server sees only its own calls; the client draws which calls are
re-executed from a private seed after the fact, on another server (a stateless
``forward``, the same kind of call as fine-tuning traffic), so a server cannot tell a
checked call from an unchecked one. A cheater escapes a check only if the witness
colludes with it (probability about its coalition's share of the span's servers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.swarm.blocks import Span
from deai.swarm.wire import FRAC_BITS, ActCodec, fixed_rows

ONE = 2**FRAC_BITS


def row_distances(claimed: Tensor, reference: Tensor) -> np.ndarray:
    """Per-row max-abs distance in fixed-point units; both ``[N, H]``."""
    if claimed.shape != reference.shape:
        raise ConfigError(f"verify: shapes {tuple(claimed.shape)} vs {tuple(reference.shape)}")
    a = fixed_rows(claimed).astype(np.int64)
    b = fixed_rows(reference).astype(np.int64)
    return np.abs(a - b).max(axis=1)


def scale_of(reference: Tensor) -> np.ndarray:
    """Per-row ``max(max_i |b_i|, 2^12)`` in fixed-point units."""
    b = np.abs(fixed_rows(reference).astype(np.int64)).max(axis=1)
    return np.maximum(b, ONE)


def slack(claimed: Tensor, codec: ActCodec) -> np.ndarray:
    """Per-row allowance for the codec's rounding, in fixed-point units."""
    if codec is ActCodec.FLOAT32:
        return np.zeros(claimed.shape[0], dtype=np.int64)
    a = np.abs(fixed_rows(claimed).astype(np.int64)).max(axis=1)
    return -(-a // 254) + 1


def allowance(claimed: Tensor, reference: Tensor, tol_ppb: int, codec: ActCodec) -> np.ndarray:
    return tol_ppb * scale_of(reference) // 10**9 + slack(claimed, codec)


def relative_ppb(claimed: Tensor, reference: Tensor) -> np.ndarray:
    """Per-row distance over scale, in parts per billion (what calibration measures)."""
    return row_distances(claimed, reference) * 10**9 // scale_of(reference)


@dataclass(frozen=True)
class Comparison:
    ok: bool
    worst_row: int  # index of the row furthest beyond its allowance
    distance: int  # that row's distance (fixed-point units)
    allowed: int  # that row's allowance
    ppb: int  # that row's distance relative to the reference scale


def compare(claimed: Tensor, reference: Tensor, tol_ppb: int, codec: ActCodec) -> Comparison:
    """Whether every row of ``claimed [N, H]`` is within tolerance of ``reference``."""
    d = row_distances(claimed, reference)
    allowed = allowance(claimed, reference, tol_ppb, codec)
    excess = d - allowed
    k = int(np.argmax(excess))
    ppb = int(d[k] * 10**9 // scale_of(reference)[k])
    return Comparison(bool((excess <= 0).all()), k, int(d[k]), int(allowed[k]), ppb)


@dataclass(frozen=True)
class Calibration:
    eps_max_ppb: int  # largest honest relative distance seen
    tol_ppb: int  # what checks use
    pairs: int  # honest pairs measured


def honest_distance(span: Span, hidden: Tensor, prompt_len: int) -> int:
    """Relative distance (ppb) between incremental (KV-cache) and prefix execution of
    ``hidden [1, T, H]``: what a witness's honest re-execution differs by."""
    with torch.no_grad():
        prefix = span(hidden, 0, None)[0]  # [T, H]
        cache = span.new_cache()
        parts = [span(hidden[:, :prompt_len], 0, cache)[0]]
        for p in range(prompt_len, hidden.shape[1]):
            parts.append(span(hidden[:, p : p + 1], p, cache)[0])
    return int(relative_ppb(torch.cat(parts), prefix).max())


def calibrate(
    spans: list[Span],
    inputs: list[Tensor],
    prompt_len: int,
    safety: float = 8.0,
    floor: int = 1000,
    threads: tuple[int, ...] = (1, 2),
) -> Calibration:
    """Tolerance from honest disagreements over ``spans x inputs x threads``."""
    eps = 0
    pairs = 0
    before = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            for span in spans:
                for x in inputs:
                    eps = max(eps, honest_distance(span, x, prompt_len))
                    pairs += 1
    finally:
        torch.set_num_threads(before)
    return Calibration(eps, max(floor, math.ceil(safety * eps)), pairs)


@dataclass(frozen=True)
class Canary:
    start: int
    end: int
    hidden: Tensor  # [1, T, H] a real input of block `start`
    expected: Tensor  # [1, T, H] the honest output of blocks [start, end)


@dataclass
class CanarySet:
    """Known answers, each sent to a given server at most once."""

    canaries: list[Canary]
    used: dict[str, set[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, span: Span, inputs: list[Tensor]) -> CanarySet:
        with torch.no_grad():
            return cls([Canary(span.start, span.end, x, span(x, 0, None)) for x in inputs])

    def take(self, server: str, start: int, end: int) -> Canary | None:
        """An unused canary for blocks inside ``[start, end)``, or None."""
        used = self.used.setdefault(server, set())
        for i, c in enumerate(self.canaries):
            if i not in used and start <= c.start and c.end <= end:
                used.add(i)
                return c
        return None
