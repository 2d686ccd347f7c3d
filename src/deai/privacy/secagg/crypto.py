"""The cryptographic primitives of secure aggregation, all from ``cryptography``.

* Key agreement: X25519 (RFC 7748) then HKDF-SHA256 (RFC 5869) with a label and the
  session id, so keys of one round are useless in another.
* Authenticated encryption of the Shamir shares: AES-256-GCM with a deterministic nonce
  ``sender || recipient || 0``. The pairwise key is shared by both directions of a pair
  and used once per direction per session, so (key, nonce) never repeats.
* PRG: the AES-256-CTR keystream of a 32-byte seed, read as little-endian uint32 words.
  AES-CTR is a PRF in counter mode; its output is computationally indistinguishable from
  uniform, which is what makes a masked vector look uniform modulo 2^k.
* Randomness: ``os.urandom`` in deployment; a seeded AES-CTR DRBG for reproducible
  simulation and tests (never use a fixed seed outside simulation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from deai.errors import PrivacyError
from deai.privacy.secagg.fixedpoint import U32

RandBytes = Callable[[int], bytes]
KEY_BYTES = 32


class SeededRandom:
    """A deterministic byte stream (AES-256-CTR keystream of a hashed seed) for simulation."""

    def __init__(self, seed: bytes) -> None:
        key = _hkdf(seed, b"deai/secagg/drbg", b"")
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def __call__(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


def make_randbytes(seed: bytes | None) -> RandBytes:
    """``os.urandom`` when ``seed`` is None, else a seeded deterministic stream."""
    return os.urandom if seed is None else SeededRandom(seed)


def _hkdf(secret: bytes, label: bytes, session: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label + session
    ).derive(secret)


def keypair(randbytes: RandBytes) -> tuple[bytes, bytes]:
    """(private bytes, public bytes) of a fresh X25519 key."""
    sk = randbytes(KEY_BYTES)
    pk = X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes_raw()
    return sk, pk


def agree(sk: bytes, peer_pk: bytes, label: bytes, session: bytes) -> bytes:
    """HKDF(X25519(sk, peer_pk)) for this label and session; symmetric in the pair."""
    try:
        shared = X25519PrivateKey.from_private_bytes(sk).exchange(
            X25519PublicKey.from_public_bytes(peer_pk)
        )
    except ValueError as e:  # malformed or low-order public key
        raise PrivacyError(f"secagg: key agreement failed: {e}") from e
    return _hkdf(shared, label, session)


def _nonce(sender: int, recipient: int) -> bytes:
    return sender.to_bytes(4, "little") + recipient.to_bytes(4, "little") + bytes(4)


def seal(key: bytes, sender: int, recipient: int, session: bytes, plaintext: bytes) -> bytes:
    ad = session + _nonce(sender, recipient)
    return AESGCM(key).encrypt(_nonce(sender, recipient), plaintext, ad)


def open_sealed(
    key: bytes, sender: int, recipient: int, session: bytes, ciphertext: bytes
) -> bytes:
    """Decrypt and authenticate; raises ``PrivacyError`` on a forged or misrouted ciphertext."""
    ad = session + _nonce(sender, recipient)
    try:
        return AESGCM(key).decrypt(_nonce(sender, recipient), ciphertext, ad)
    except InvalidTag as e:
        raise PrivacyError(f"secagg: ciphertext {sender}->{recipient} failed authentication") from e


def prg_words(seed: bytes, dim: int) -> U32:
    """``dim`` pseudo-random uint32 words from a 32-byte seed (AES-256-CTR keystream)."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    out = np.empty(dim, dtype="<u4")
    enc.update_into(_zeros(4 * dim), out.view(np.uint8))  # type: ignore[arg-type]
    return out.astype(np.uint32, copy=False)


@lru_cache(maxsize=4)
def _zeros(n: int) -> bytes:
    return bytes(n)
