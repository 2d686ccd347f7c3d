"""The secure-aggregation messages and their schema'd binary encoding (no pickle).

Every message is a frozen dataclass with ``to_bytes()`` / ``from_bytes()``. The layout is
little-endian: a 4-byte magic ``DSA1``, a 1-byte message kind, then the fields in declared
order; integers are uint32, byte strings are a uint32 length then the bytes, lists are a
uint32 count then the items. ``from_bytes`` checks the magic, kind, every length and that
nothing trails, and raises :class:`~deai.errors.InvalidMessage` otherwise, so a peer's
bytes are parsed, never executed.

Stages (Bonawitz et al. 2017, Fig. 5, the malicious-server variant):

0. client -> server ``AdvertiseKeys`` (signed); server -> each client ``KeyRoster`` (its
   neighbours' signed keys)
1. client -> server ``ShareKeys`` (encrypted Shamir shares); server -> ``ShareBundle``
2. client -> server ``MaskedInput``; server -> each survivor ``ConsistencyCheck`` (U3)
3. client -> server ``ConsistencySignature`` (its signature on U3); server -> each
   signer ``UnmaskRequest`` (U3 and the signatures collected on it)
4. client -> server ``UnmaskResponse`` (self-mask shares of survivors, key shares of drop-outs)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from deai.errors import InvalidMessage

MAGIC = b"DSA1"


class Kind(IntEnum):
    ADVERTISE_KEYS = 1
    KEY_ROSTER = 2
    SHARE_KEYS = 3
    SHARE_BUNDLE = 4
    MASKED_INPUT = 5
    UNMASK_REQUEST = 6
    UNMASK_RESPONSE = 7
    CONSISTENCY_CHECK = 8
    CONSISTENCY_SIGNATURE = 9


class _Writer:
    def __init__(self, kind: Kind) -> None:
        self.parts: list[bytes] = [MAGIC, bytes([int(kind)])]

    def u32(self, v: int) -> _Writer:
        self.parts.append(struct.pack("<I", v))
        return self

    def blob(self, b: bytes) -> _Writer:
        self.parts.append(struct.pack("<I", len(b)))
        self.parts.append(b)
        return self

    def pairs(self, items: tuple[tuple[int, bytes], ...]) -> _Writer:
        self.u32(len(items))
        for i, b in items:
            self.u32(i).blob(b)
        return self

    def ints(self, items: tuple[int, ...]) -> _Writer:
        self.u32(len(items))
        for i in items:
            self.u32(i)
        return self

    def done(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes, kind: Kind) -> None:
        if len(data) < 5 or data[:4] != MAGIC:
            raise InvalidMessage("secagg: bad magic")
        if data[4] != int(kind):
            raise InvalidMessage(f"secagg: expected a {kind.name} message, got kind {data[4]}")
        self.mv = memoryview(data)
        self.at = 5

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.mv):
            raise InvalidMessage("secagg: truncated message")
        out = bytes(self.mv[self.at : self.at + n])
        self.at += n
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self._take(4))[0])

    def blob(self) -> bytes:
        return self._take(self.u32())

    def count(self, min_item: int) -> int:
        n = self.u32()
        if n * min_item > len(self.mv) - self.at:
            raise InvalidMessage("secagg: list count exceeds message size")
        return n

    def pairs(self) -> tuple[tuple[int, bytes], ...]:
        return tuple((self.u32(), self.blob()) for _ in range(self.count(8)))

    def ints(self) -> tuple[int, ...]:
        return tuple(self.u32() for _ in range(self.count(4)))

    def end(self) -> None:
        if self.at != len(self.mv):
            raise InvalidMessage("secagg: trailing bytes")


@dataclass(frozen=True)
class AdvertiseKeys:
    kind: ClassVar[Kind] = Kind.ADVERTISE_KEYS
    sender: int
    c_pk: bytes  # X25519 public key for encrypting shares
    s_pk: bytes  # X25519 public key for pairwise masks
    signature: bytes  # the sender's identity signature on protocol.advert_bytes(...)

    def to_bytes(self) -> bytes:
        w = _Writer(self.kind).u32(self.sender).blob(self.c_pk).blob(self.s_pk)
        return w.blob(self.signature).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.blob(), r.blob(), r.blob())
        r.end()
        return out


@dataclass(frozen=True)
class PeerKeys:
    client: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes  # client's signature on its keys, as it advertised them


@dataclass(frozen=True)
class KeyRoster:
    kind: ClassVar[Kind] = Kind.KEY_ROSTER
    recipient: int
    peers: tuple[PeerKeys, ...]  # the recipient's neighbours (and itself) that advertised

    def to_bytes(self) -> bytes:
        w = _Writer(self.kind).u32(self.recipient).u32(len(self.peers))
        for p in self.peers:
            w.u32(p.client).blob(p.c_pk).blob(p.s_pk).blob(p.signature)
        return w.done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        recipient = r.u32()
        peers = tuple(PeerKeys(r.u32(), r.blob(), r.blob(), r.blob()) for _ in range(r.count(16)))
        r.end()
        return cls(recipient, peers)


@dataclass(frozen=True)
class ShareKeys:
    kind: ClassVar[Kind] = Kind.SHARE_KEYS
    sender: int
    ciphertexts: tuple[tuple[int, bytes], ...]  # (recipient, AEAD ciphertext of the shares)

    def to_bytes(self) -> bytes:
        return _Writer(self.kind).u32(self.sender).pairs(self.ciphertexts).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.pairs())
        r.end()
        return out


@dataclass(frozen=True)
class ShareBundle:
    kind: ClassVar[Kind] = Kind.SHARE_BUNDLE
    recipient: int
    ciphertexts: tuple[tuple[int, bytes], ...]  # (sender, ciphertext addressed to recipient)

    def to_bytes(self) -> bytes:
        return _Writer(self.kind).u32(self.recipient).pairs(self.ciphertexts).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.pairs())
        r.end()
        return out


@dataclass(frozen=True)
class MaskedInput:
    kind: ClassVar[Kind] = Kind.MASKED_INPUT
    sender: int
    bits: int  # k: the modulus is 2^k
    dim: int
    payload: bytes  # dim words of k bits, densely packed (see fixedpoint.pack)

    def to_bytes(self) -> bytes:
        w = _Writer(self.kind).u32(self.sender).u32(self.bits).u32(self.dim)
        return w.blob(self.payload).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.u32(), r.u32(), r.blob())
        r.end()
        return out


@dataclass(frozen=True)
class ConsistencyCheck:
    kind: ClassVar[Kind] = Kind.CONSISTENCY_CHECK
    recipient: int
    survivors: tuple[int, ...]  # U3: clients whose masked input the server holds

    def to_bytes(self) -> bytes:
        return _Writer(self.kind).u32(self.recipient).ints(self.survivors).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.ints())
        r.end()
        return out


@dataclass(frozen=True)
class ConsistencySignature:
    kind: ClassVar[Kind] = Kind.CONSISTENCY_SIGNATURE
    sender: int
    signature: bytes  # the sender's identity signature on protocol.consistency_bytes(U3)

    def to_bytes(self) -> bytes:
        return _Writer(self.kind).u32(self.sender).blob(self.signature).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.blob())
        r.end()
        return out


@dataclass(frozen=True)
class UnmaskRequest:
    kind: ClassVar[Kind] = Kind.UNMASK_REQUEST
    recipient: int
    survivors: tuple[int, ...]  # U3, as in the consistency check
    signatures: tuple[tuple[int, bytes], ...]  # U4: (client, its signature on U3)

    def to_bytes(self) -> bytes:
        w = _Writer(self.kind).u32(self.recipient).ints(self.survivors)
        return w.pairs(self.signatures).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.ints(), r.pairs())
        r.end()
        return out


@dataclass(frozen=True)
class UnmaskResponse:
    kind: ClassVar[Kind] = Kind.UNMASK_RESPONSE
    sender: int
    self_mask_shares: tuple[tuple[int, bytes], ...]  # (owner in U3, share of its seed b)
    key_shares: tuple[tuple[int, bytes], ...]  # (owner dropped after sharing, share of s_sk)

    def to_bytes(self) -> bytes:
        w = _Writer(self.kind).u32(self.sender).pairs(self.self_mask_shares)
        return w.pairs(self.key_shares).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, cls.kind)
        out = cls(r.u32(), r.pairs(), r.pairs())
        r.end()
        return out


Message = (
    AdvertiseKeys
    | KeyRoster
    | ShareKeys
    | ShareBundle
    | MaskedInput
    | ConsistencyCheck
    | ConsistencySignature
    | UnmaskRequest
    | UnmaskResponse
)
