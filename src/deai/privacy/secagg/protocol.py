"""Shared definitions of the secure-aggregation protocol: configuration, stages, errors,
the bytes that clients sign, and the mask arithmetic both sides must agree on.

Threat model: the malicious-server variant of Bonawitz et al. (CCS 2017, Sec. 6 and
Fig. 5), with the SecAgg+ graph of Bell et al. (CCS 2020) as an option. The server
(validator) may deviate arbitrarily: drop, reorder, replay or rewrite any message, show
different clients different views, and collude with ``c`` clients. Against it:

* every client signs its two public keys (with its node identity key, bound to the round's
  session), and every client checks every peer's signature in its roster and aborts on one
  bad signature, so the server cannot substitute keys (the man-in-the-middle attack) and
  every share is encrypted to the holder that really owns the key;
* before revealing any share, the survivors sign the survivor set ``U3`` (the consistency
  round) and each client requires ``t`` valid signatures on *its* ``U3`` from its holder
  set, else aborts; with ``2t > holders + c`` two different survivor sets cannot both
  collect ``t`` signatures, so all honest clients that reveal anything agree on ``U3``;
* an honest client reveals at most one of the two shares it holds for a peer (the
  self-mask seed ``b`` if the peer survived, the mask key ``s`` if it dropped), refuses if
  it is itself declared dropped, and needs at least ``t`` declared survivors.

So the server learns the sum of one agreed set of at least ``t`` signers (``t - c`` of them
honest) and nothing about an honest input alone, as long as ``c < 2t - holders`` (``holders``
= n for full SecAgg, k + 1 for SecAgg+ with degree k): the configuration refuses
``2t <= holders``, where a server colluding with nobody could already split the clients in
two. Dropouts: the exact sum of the inputs received is output as long as every secret to be
reconstructed keeps ``t`` live holders; otherwise the round aborts with the reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from deai.errors import ConfigError, PrivacyError
from deai.privacy.secagg.crypto import agree, prg_words
from deai.privacy.secagg.fixedpoint import U32, FixedPoint, modulus_bits
from deai.privacy.secagg.graph import neighbours

ENC_LABEL = b"deai/secagg/enc"
MASK_LABEL = b"deai/secagg/mask"
_ADVERT_DOMAIN = b"deai/secagg/v2/advertise"
_CONSISTENCY_DOMAIN = b"deai/secagg/v2/consistency"

Signer = Callable[[bytes], bytes]  # signs bytes with this client's identity key
Verifier = Callable[[int, bytes, bytes], bool]  # (client, data, signature) -> valid?


class Stage(Enum):
    ADVERTISE_KEYS = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    CONSISTENCY = 3
    UNMASKING = 4
    DONE = 5


def advert_bytes(session: bytes, client: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """What client ``client`` signs about its public keys: domain, session, id, keys."""
    return _ADVERT_DOMAIN + session + struct.pack("<I", client) + c_pk + s_pk


def consistency_bytes(session: bytes, survivors: Sequence[int]) -> bytes:
    """What a survivor signs in the consistency round: the survivor set U3 of this session."""
    ids = sorted(survivors)
    return _CONSISTENCY_DOMAIN + session + struct.pack(f"<I{len(ids)}I", len(ids), *ids)


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
        holders = self.holders()
        if not 2 <= self.threshold <= holders or 2 * self.threshold <= holders:
            raise ConfigError(
                f"secagg threshold must be in [{holders // 2 + 1}, {holders}] (more than half "
                f"of the {holders} holders of each secret, else a malicious server can split "
                f"the clients in two), got {self.threshold}"
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

    def holders(self) -> int:
        """Share holders of the least-connected client's secrets (neighbours + itself)."""
        g = neighbours(self.n_clients, self.degree, self.graph_seed)
        return min(len(v) for v in g) + 1

    def max_colluders(self) -> int:
        """Clients that may collude with a malicious server: c < 2t - holders."""
        return max(0, 2 * self.threshold - self.holders() - 1)

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
