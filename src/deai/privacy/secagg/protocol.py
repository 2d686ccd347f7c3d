"""Shared definitions of the secure-aggregation protocol: configuration, stages, errors
and the mask arithmetic both sides must agree on.

Threat model (Bonawitz et al. 2017, honest-but-curious server; Bell et al. 2020 for
SecAgg+): the server (validator) and up to ``t - 1`` colluding clients per neighbourhood
learn nothing about an honest client's input beyond the sum of the surviving inputs.
The server may drop any client at any stage; the protocol still outputs the exact sum of
the inputs it received as long as every secret it must reconstruct keeps ``t`` live share
holders. A client never reveals both shares of one peer (its self-mask seed *and* its
mask key), and refuses to unmask if it is itself declared dropped or if fewer than ``t``
survivors are declared. Out of scope here, and provided by the transport or later work:
authenticating the advertised keys with long-term signatures (needed against an actively
malicious server) and the optional consistency-check round.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from deai.errors import ConfigError, PrivacyError
from deai.privacy.secagg.crypto import agree, prg_words
from deai.privacy.secagg.fixedpoint import U32, FixedPoint, modulus_bits
from deai.privacy.secagg.graph import neighbours

ENC_LABEL = b"deai/secagg/enc"
MASK_LABEL = b"deai/secagg/mask"


class Stage(Enum):
    ADVERTISE_KEYS = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    UNMASKING = 3
    DONE = 4


class SecAggAborted(PrivacyError):
    """The round cannot finish securely (too many drop-outs, bad shares); says why."""

    def __init__(self, stage: Stage, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"secure aggregation aborted at stage {stage.name}: {reason}")


@dataclass(frozen=True)
class SecAggConfig:
    n_clients: int  # clients are numbered 0 .. n_clients - 1
    threshold: int  # t: Shamir threshold; drop-outs up to (holders - t) are recovered
    dim: int  # length of every input vector
    clip: float  # inputs are clipped to [-clip, clip] per coordinate before encoding
    value_bits: int = 16  # b: bits per encoded coordinate
    degree: int | None = None  # None: full SecAgg; even k: SecAgg+ with k neighbours
    graph_seed: bytes = b"deai/secagg/graph"  # public seed of the SecAgg+ graph
    session: bytes = b"deai/secagg/session"  # binds keys to one round (job id, round)

    def __post_init__(self) -> None:
        if self.n_clients < 2:
            raise ConfigError(f"secagg needs n_clients >= 2, got {self.n_clients}")
        if self.dim < 1:
            raise ConfigError(f"secagg dim must be >= 1, got {self.dim}")
        g = neighbours(self.n_clients, self.degree, self.graph_seed)
        holders = min(len(v) for v in g) + 1
        if not 2 <= self.threshold <= holders:
            raise ConfigError(
                f"secagg threshold must be in [2, {holders}] (neighbours + self), "
                f"got {self.threshold}"
            )
        FixedPoint(self.clip, self.value_bits, self.bits)  # validates bits <= 32

    @property
    def bits(self) -> int:
        return modulus_bits(self.value_bits, self.n_clients)

    @property
    def fixed_point(self) -> FixedPoint:
        return FixedPoint(self.clip, self.value_bits, self.bits)

    def neighbours(self, u: int) -> frozenset[int]:
        return neighbours(self.n_clients, self.degree, self.graph_seed)[u]

    def max_dropouts_full(self) -> int:
        """Drop-outs the complete graph always survives: n - t."""
        return self.n_clients - self.threshold


def add_pairwise_mask(
    acc: U32,
    u: int,
    v: int,
    sk: bytes,
    peer_pk: bytes,
    session: bytes,
    remove: bool = False,
) -> None:
    """Add client ``u``'s mask for the pair (u, v) into ``acc`` in place: ``+PRG`` if
    u < v else ``-PRG``, so the two masks of a pair cancel in the sum (uint32 wrap-around
    is arithmetic mod 2^32, and 2^k divides 2^32). ``sk``/``peer_pk`` may be either side's
    (the agreed key is symmetric). ``remove=True`` subtracts the same mask instead."""
    words = prg_words(agree(sk, peer_pk, MASK_LABEL, session), acc.shape[0])
    if (u < v) != remove:
        np.add(acc, words, out=acc)
    else:
        np.subtract(acc, words, out=acc)


def holder_x(client: int) -> int:
    """Shamir x-coordinate of a client (non-zero)."""
    return client + 1
