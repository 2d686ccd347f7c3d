"""Secret sampling of the tasks that get cross-checked.

The requester decides *privately* which tasks are re-executed by extra workers:

    checked(task_id)  <=>  HMAC-SHA256(secret, task_id) < threshold,  threshold = rate * 2^256

HMAC-SHA256 is a PRF: without ``secret`` the decision for a new task id is indistinguishable
from a coin of bias ``rate``, so a worker cannot tell a checked task from an unchecked one and
must treat every task as checked with probability ``rate``. The decision does not depend on
the task's content, so nothing in a task betrays it either.

Auditability: before any task, the requester publishes ``commitment = keccak(secret |
threshold)``. After the job it reveals ``secret``; anyone then recomputes every decision
(:func:`audit`) and checks both the promised rate (the threshold is bound by the commitment)
and that the requester did not check more or fewer tasks than its secret implies (no
targeted audits of a worker it dislikes, no silent drop of checks).

Assumptions: ``secret`` has 32 bytes of entropy and never leaks before the reveal; a
requester colluding with a worker could tell it which tasks are checked, but the requester is
the party the checks protect. The on-chain record of a task must not show whether it is
checked before the primary worker's result is committed (see :mod:`.commit_reveal`).
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from hashlib import sha256

from eth_hash.auto import keccak

from deai.errors import ConfigError, VerificationError

_SPACE = 2**256


def rate_threshold(rate: float) -> int:
    """``floor(rate * 2^256)``, computed exactly from the binary value of ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"sampling: rate must be in [0, 1], got {rate}")
    return min(_SPACE, math.floor(Fraction(rate) * _SPACE))


def key_commitment(secret: bytes, threshold: int) -> bytes:
    """``keccak(secret | threshold as uint256 big-endian)``, published before the first task."""
    return bytes(keccak(secret + min(threshold, _SPACE - 1).to_bytes(32, "big")))


def prf(secret: bytes, task_id: bytes) -> int:
    """HMAC-SHA256(secret, task_id) as a 256-bit integer."""
    return int.from_bytes(hmac.new(secret, task_id, sha256).digest(), "big")


class SecretSampler:
    """The requester's private sampling key. ``is_checked`` is the whole decision."""

    def __init__(self, rate: float, secret: bytes | None = None) -> None:
        self.secret = secrets.token_bytes(32) if secret is None else secret
        if len(self.secret) < 16:
            raise ConfigError("sampling: secret must have at least 16 bytes")
        self.rate = rate
        self.threshold = rate_threshold(rate)

    @property
    def commitment(self) -> bytes:
        return key_commitment(self.secret, self.threshold)

    def is_checked(self, task_id: bytes) -> bool:
        return prf(self.secret, task_id) < self.threshold


@dataclass(frozen=True)
class SamplingAudit:
    tasks: int  # tasks audited
    checked: int  # tasks the revealed secret says were checked
    realized_rate: float  # checked / tasks
    promised_rate: float  # threshold / 2^256
    z_score: float  # (checked - n * rate) / sqrt(n * rate * (1 - rate)); |z| > 4 is suspicious
    claims_match: bool  # the requester's list of checked tasks equals the recomputed one


def audit(
    commitment: bytes,
    secret: bytes,
    threshold: int,
    task_ids: Iterable[bytes],
    claimed_checked: Iterable[bytes],
) -> SamplingAudit:
    """Check a revealed sampling key against its commitment and recompute every decision.

    Raises :class:`VerificationError` when the revealed key or threshold does not open the
    commitment (the requester lied about its rate or key).
    """
    if key_commitment(secret, threshold) != commitment:
        raise VerificationError("sampling: revealed key does not open the commitment")
    ids = list(task_ids)
    recomputed = {t for t in ids if prf(secret, t) < threshold}
    n, c = len(ids), len(recomputed)
    rate = threshold / _SPACE
    var = n * rate * (1 - rate)
    z = (c - n * rate) / math.sqrt(var) if var > 0 else 0.0
    return SamplingAudit(
        tasks=n,
        checked=c,
        realized_rate=c / n if n else 0.0,
        promised_rate=rate,
        z_score=z,
        claims_match=set(claimed_checked) == recomputed,
    )


# ---------------------------------------------------------------------------------------
# Issue 15, finding 2: a requester that picks the task nonces can grind them (about 20
# hashes a task at rate 0.05) until the checks fall on the worker it wants, and the audit
# above still passes (the realized rate is right). Two defences:
#
# * off chain, nonces are *derived*: the i-th task of a key uses
#   ``derived_nonce(commitment, i)``; :func:`ground_nonces` lists every task whose nonce is
#   not the derived one (a ground sequence is caught at once);
# * on chain (``Tasks.vy``), the decision input is the worker's own commitment, which the
#   requester cannot know when it assigns the task: ``sampled(secret, commitment)``.


def derived_nonce(commitment: bytes, index: int) -> int:
    """The only nonce task number ``index`` of a committed key may use."""
    return int.from_bytes(keccak(b"deai.nonce" + commitment + index.to_bytes(32, "big")), "big")


def ground_nonces(commitment: bytes, nonces: Iterable[int]) -> list[int]:
    """Indices of tasks whose nonce is not :func:`derived_nonce` (empty: no grinding)."""
    return [i for i, n in enumerate(nonces) if n != derived_nonce(commitment, i)]
