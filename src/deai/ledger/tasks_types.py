"""Typed views of the Tasks contract (hidden check groups) and the values its parties
commit to. See ``contracts/Tasks.vy`` and docs/verification.md."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

from deai.errors import ConfigError

LANES = 8  # int32 lanes of a packed fingerprint
PROFILES = 4  # execution profiles a key sets a tolerance for
_LANE_MIN, _LANE_MAX = -(2**31), 2**31 - 1


class SlotState(enum.IntFlag):
    """``Tasks.vy``'s ``SlotState`` flag."""

    NONE = 0
    POSTED = 1
    COMMITTED = 2
    REVEALED = 4
    PAID = 8
    SLASHED = 16
    REFUNDED = 32


@dataclass(frozen=True)
class KeyView:
    key_id: int
    requester: str
    commitment: bytes
    threshold: int
    bond: int
    slot_bond: int
    reveal_by: int
    secret: bytes
    revealed_at: int
    failed: bool
    released: bool


@dataclass(frozen=True)
class SlotView:
    slot_id: bytes
    key_id: int
    worker: str
    spec: bytes
    profile: int
    fee: int
    commit_deadline: int
    commitment: bytes
    fingerprint: int
    group: int
    checker: bool
    state: SlotState


def pack_lanes(values: Sequence[int]) -> int:
    """Eight signed int32 values as one uint256 (lane ``i`` in bits ``32i .. 32i + 31``)."""
    if len(values) != LANES:
        raise ConfigError(f"tasks: a fingerprint has {LANES} lanes, got {len(values)}")
    word = 0
    for i, v in enumerate(values):
        if not _LANE_MIN <= int(v) <= _LANE_MAX:
            raise ConfigError(f"tasks: lane value {v} outside int32")
        word |= (int(v) & 0xFFFFFFFF) << (32 * i)
    return word


def unpack_lanes(word: int) -> list[int]:
    """Inverse of :func:`pack_lanes`."""
    out = []
    for i in range(LANES):
        raw = (word >> (32 * i)) & 0xFFFFFFFF
        out.append(raw - 2**32 if raw >= 2**31 else raw)
    return out


def lanes_match(a: int, b: int, tolerance: int) -> bool:
    """What the contract's ``_match`` computes."""
    return all(
        abs(x - y) <= tolerance for x, y in zip(unpack_lanes(a), unpack_lanes(b), strict=True)
    )


def key_commitment(secret: bytes, threshold: int) -> bytes:
    """``keccak256(abi_encode(secret, threshold))``, what ``commit_key`` stores."""
    return bytes(keccak(encode(["bytes32", "uint256"], [secret, threshold])))


def spec_commitment(spec_hash: bytes, blind: bytes) -> bytes:
    """``keccak256(abi_encode(spec_hash, blind))``: a slot's blinded spec."""
    return bytes(keccak(encode(["bytes32", "bytes32"], [spec_hash, blind])))


def slot_commitment(slot_id: bytes, worker: str, fingerprint: int, salt: bytes) -> bytes:
    """``keccak256(abi_encode(slot_id, worker, fingerprint, salt))``, what ``reveal`` checks."""
    return bytes(
        keccak(
            encode(
                ["bytes32", "address", "uint256", "bytes32"], [slot_id, worker, fingerprint, salt]
            )
        )
    )


def juror_commitment(group_id: int, juror: str, fingerprint: int, salt: bytes) -> bytes:
    """``keccak256(abi_encode(group_id, juror, fingerprint, salt))``."""
    return bytes(
        keccak(
            encode(
                ["uint256", "address", "uint256", "bytes32"], [group_id, juror, fingerprint, salt]
            )
        )
    )


def sampled(secret: bytes, commitment: bytes, threshold: int) -> bool:
    """The derived decision: ``keccak256(abi_encode(secret, commitment)) < threshold``."""
    digest = keccak(encode(["bytes32", "bytes32"], [secret, commitment]))
    return int.from_bytes(digest, "big") < threshold
