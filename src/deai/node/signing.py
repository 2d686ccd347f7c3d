"""Signed message envelopes (EIP-191) and replay protection for the HTTP transport.

Every message a deployed node sends travels with an envelope of six HTTP headers::

    X-Deai-Sender     0x-address of the signer (checksummed)
    X-Deai-Recipient  0x-address of the node that must accept it
    X-Deai-Nonce      32 hex digits, fresh random per message
    X-Deai-Timestamp  unix seconds at signing
    X-Deai-Round      the message's round, or -1 if it has none
    X-Deai-Signature  0x + 65-byte EIP-191 ``personal_sign`` signature

The signature covers ``keccak256(DOMAIN | sender | recipient | nonce | timestamp | round |
keccak256(body))`` where the body is the wire encoding of :mod:`deai.node.messages`, so
no header and no body byte can change without breaking it.

Threat model: the network is hostile (anyone can send, record and resend bytes) but
cannot forge secp256k1 signatures. A receiver rejects, with a distinct :class:`Rejected`
code: a signature that does not recover to the claimed sender (``wrong_signer``), an
envelope addressed to another node (``wrong_recipient``), a timestamp outside the replay
window (``stale``), a nonce already seen from that sender inside the window (``replay``)
and a round that goes backwards for the same sender and job (``stale_round``, checked by
the runtime). Nonces are remembered for the window only, so memory is bounded by the
message rate times the window; a message older than the window is refused as stale,
which closes the gap. Clocks of honest nodes must agree to within the window.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from deai.errors import InvalidMessage

DOMAIN = b"deai/v1/envelope"
NO_ROUND = -1

H_SENDER = "x-deai-sender"
H_RECIPIENT = "x-deai-recipient"
H_NONCE = "x-deai-nonce"
H_TIMESTAMP = "x-deai-timestamp"
H_ROUND = "x-deai-round"
H_SIGNATURE = "x-deai-signature"
HEADERS = (H_SENDER, H_RECIPIENT, H_NONCE, H_TIMESTAMP, H_ROUND, H_SIGNATURE)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")
_INT = re.compile(r"^-?[0-9]{1,19}$")


class RejectCode(StrEnum):
    """Why an inbound request was refused (the ``error`` field of the HTTP answer)."""

    MALFORMED = "malformed"  # headers or body do not parse
    BAD_SIGNATURE = "bad_signature"  # the signature does not recover at all
    WRONG_SIGNER = "wrong_signer"  # it recovers to another address than the sender header
    WRONG_RECIPIENT = "wrong_recipient"  # addressed to another node
    STALE = "stale"  # timestamp outside the replay window
    REPLAY = "replay"  # nonce already seen from this sender
    STALE_ROUND = "stale_round"  # round lower than one this sender already sent for the job
    BANNED = "banned"  # the sender exceeded its strike budget
    FORBIDDEN = "forbidden"  # a valid signer that may not call this endpoint
    REJECTED = "rejected"  # a role refused the message (reason in ``detail``)
    LATE = "late"  # an update for a round that closed (an honest straggler: no strike)
    UNKNOWN_JOB = "unknown_job"  # a job this node does not know (yet): retry later
    NOT_YET = "not_yet"  # a large body from a key that is no party of a known job yet
    TOO_LARGE = "too_large"  # the body is over the limit
    RATE_LIMITED = "rate_limited"  # the source or key sends too fast
    QUOTA = "quota"  # the key or job is over its byte quota
    BUSY = "busy"  # too many unauthenticated bytes in flight: retry later


class Rejected(InvalidMessage):
    """An inbound request was refused; ``code`` says why."""

    def __init__(self, code: RejectCode, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else str(code))


@dataclass(frozen=True)
class Envelope:
    sender: str  # checksummed address of the signer
    recipient: str  # checksummed address of the receiver
    nonce: str  # 32 lowercase hex digits
    timestamp: int  # unix seconds at signing
    round: int  # the message's round or NO_ROUND
    signature: str  # 0x-prefixed 65-byte signature

    def digest(self, body: bytes, body_hash: bytes | None = None) -> bytes:
        """The 32 bytes that are signed (see the module docstring); ``body_hash`` is
        ``keccak256(body)`` if the caller computed it already (off the event loop)."""
        return keccak(
            DOMAIN
            + bytes.fromhex(self.sender[2:])
            + bytes.fromhex(self.recipient[2:])
            + bytes.fromhex(self.nonce)
            + struct.pack(">Qq", self.timestamp, self.round)
            + (keccak(body) if body_hash is None else body_hash)
        )

    def headers(self) -> dict[str, str]:
        return {
            H_SENDER: self.sender,
            H_RECIPIENT: self.recipient,
            H_NONCE: self.nonce,
            H_TIMESTAMP: str(self.timestamp),
            H_ROUND: str(self.round),
            H_SIGNATURE: self.signature,
        }

    @staticmethod
    def from_headers(headers: Mapping[str, str]) -> Envelope:
        """Parse the six headers; raise :class:`Rejected` (``malformed``) on any defect."""
        values = {h: headers.get(h) for h in HEADERS}
        missing = [h for h, v in values.items() if v is None]
        if missing:
            raise Rejected(RejectCode.MALFORMED, f"missing headers {missing}")
        sender, recipient = str(values[H_SENDER]), str(values[H_RECIPIENT])
        nonce, ts, rnd = str(values[H_NONCE]), str(values[H_TIMESTAMP]), str(values[H_ROUND])
        sig = str(values[H_SIGNATURE])
        if not (_ADDRESS.match(sender) and _ADDRESS.match(recipient)):
            raise Rejected(RejectCode.MALFORMED, "sender and recipient must be 0x addresses")
        if not _NONCE.match(nonce):
            raise Rejected(RejectCode.MALFORMED, "nonce must be 32 lowercase hex digits")
        if not (_INT.match(ts) and _INT.match(rnd)):
            raise Rejected(RejectCode.MALFORMED, "timestamp and round must be integers")
        timestamp, round_ = int(ts), int(rnd)
        if not 0 <= timestamp < 2**63 or not NO_ROUND <= round_ < 2**62:
            raise Rejected(RejectCode.MALFORMED, "timestamp or round out of range")
        if not _SIGNATURE.match(sig):
            raise Rejected(RejectCode.MALFORMED, "signature must be 0x + 130 hex digits")
        return Envelope(
            to_checksum_address(sender),
            to_checksum_address(recipient),
            nonce,
            timestamp,
            round_,
            sig,
        )


def crypto_backend() -> str:
    """The secp256k1 backend eth-keys uses (``CoinCurveECCBackend``: compiled, ~0.1 ms per
    recovery; the pure-Python fallback costs ~12 ms and is refused by the node)."""
    from eth_keys import backends

    return type(backends.get_backend()).__name__


class Signer:
    """Signs envelopes with one node's private key."""

    def __init__(self, private_key: bytes | str) -> None:
        self._account = Account.from_key(private_key)
        self.address: str = to_checksum_address(self._account.address)

    @property
    def private_key(self) -> bytes:
        return bytes(self._account.key)

    def sign(
        self, recipient: str, body: bytes, round_: int = NO_ROUND, timestamp: int | None = None
    ) -> Envelope:
        unsigned = Envelope(
            self.address,
            to_checksum_address(recipient),
            os.urandom(16).hex(),
            int(time.time()) if timestamp is None else timestamp,
            round_,
            "",
        )
        signed = self._account.sign_message(encode_defunct(primitive=unsigned.digest(body)))
        sig = "0x" + bytes(signed.signature).hex()
        return replace(unsigned, signature=sig)

    def sign_bytes(self, data: bytes) -> bytes:
        """An EIP-191 signature over ``data`` (rosters, records: not envelopes)."""
        return bytes(self._account.sign_message(encode_defunct(data)).signature)


def verify_bytes(address: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``address``'s EIP-191 signature over ``data``."""
    try:
        found = Account.recover_message(encode_defunct(data), signature=signature)
    except Exception:  # a malformed signature is simply not valid
        return False
    return bool(found.lower() == address.lower())


def recover(envelope: Envelope, body: bytes, body_hash: bytes | None = None) -> str:
    """The address that signed ``envelope`` over ``body``; ``bad_signature`` if none."""
    try:
        addr = Account.recover_message(
            encode_defunct(primitive=envelope.digest(body, body_hash)),
            signature=bytes.fromhex(envelope.signature[2:]),
        )
    except Exception as e:  # eth-keys raises several types for invalid points / v values
        raise Rejected(RejectCode.BAD_SIGNATURE, f"signature does not recover: {e}") from e
    return to_checksum_address(addr)


class ReplayGuard:
    """Remembers ``(sender, nonce)`` pairs for ``window_s`` seconds.

    Bounded: at most ``max_entries`` nonces are kept; when full, the oldest are dropped
    early, which only widens the replay gap for messages older than that, and those are
    then refused as stale only if older than the window (documented trade-off: a flood of
    ``max_entries`` valid messages within the window is needed to exploit it, and each
    needs a valid signature from a staked peer).
    """

    def __init__(self, window_s: float = 120.0, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: float) -> None:
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= now - self.window_s and len(self._seen) < self.max_entries:
                break
            del self._seen[key]

    def record(self, envelope: Envelope, now: float | None = None) -> None:
        """Remember the envelope's nonce (once the message is accepted or finally refused)."""
        self._seen[(envelope.sender, envelope.nonce)] = time.time() if now is None else now

    def check(self, envelope: Envelope, now: float | None = None, *, record: bool = True) -> None:
        """Raise ``stale`` or ``replay``; otherwise remember the nonce if ``record``."""
        now = time.time() if now is None else now
        if abs(now - envelope.timestamp) > self.window_s:
            raise Rejected(
                RejectCode.STALE,
                f"timestamp {envelope.timestamp} is {now - envelope.timestamp:.0f} s from now; "
                f"window {self.window_s:.0f} s",
            )
        self._prune(now)
        key = (envelope.sender, envelope.nonce)
        if key in self._seen:
            raise Rejected(RejectCode.REPLAY, f"nonce {envelope.nonce} already seen")
        if record:
            self._seen[key] = now


def verify(
    envelope: Envelope,
    body: bytes,
    *,
    me: str,
    guard: ReplayGuard,
    now: float | None = None,
    record: bool = True,
    body_hash: bytes | None = None,
) -> str:
    """Check an inbound envelope completely and (if ``record``) record its nonce; return
    the sender.

    Order matters: the signature is checked before the nonce is recorded, so an attacker
    cannot burn an honest node's nonces with forged envelopes. A receiver that may still
    refuse the message retriably passes ``record=False`` and records it once it decided.
    """
    if envelope.recipient != to_checksum_address(me):
        raise Rejected(RejectCode.WRONG_RECIPIENT, f"addressed to {envelope.recipient}")
    signer = recover(envelope, body, body_hash)
    if signer != envelope.sender:
        raise Rejected(RejectCode.WRONG_SIGNER, f"claims {envelope.sender}, signed by {signer}")
    guard.check(envelope, now, record=record)
    return signer
