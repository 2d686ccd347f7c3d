"""Signed server records: what a server announces, and the book every party keeps.

A record says which blocks a server holds, how fast it runs them, how much cache room it
has left, its state and execution profile, and until when the announcement holds (TTL).
Petals keeps the same fields in a DHT where any peer may overwrite any block's entry;
here a record is signed by its owner (EIP-191 over ``keccak(DOMAIN ++ canonical JSON)``)
and a :class:`RecordBook` accepts it only if

* the signature recovers to ``owner`` (nobody else can write the owner's record),
* ``owner`` passes the identity check (staked on the swarm ledger for this model root and
  profile; see :class:`deai.swarm.chain.ChainIdentity`),
* it names this book's model root, a valid span with manifest proofs for each block,
* it is not expired and its ``seq`` is higher than the owner's last accepted one (so a
  replayed old record cannot roll a server back).

Records spread by gossip over the swarm's own calls (``records_get`` / ``records_put``):
a server pushes its record to its peers every refresh and merges what they hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from deai.swarm.errors import InvalidRecord
from deai.swarm.manifest import Manifest

DOMAIN = b"deai/swarm/record/v1"
MAX_SKEW_S = 30.0  # a record may not claim to expire further out than ttl + this


class ServerState(IntEnum):
    OFFLINE = 0  # leaving; do not route here
    JOINING = 1  # loading blocks
    ONLINE = 2  # serving


@dataclass(frozen=True)
class ServerRecord:
    owner: str  # checksummed address; only this key can sign the record
    url: str  # where to reach the server ("http://host:port" or "sim://name")
    model_root: str  # manifest root of the model served
    start: int  # first block served
    end: int  # one past the last block served
    throughput: float  # tokens per second through ONE block (compute only)
    cache_tokens_left: int  # room for more session tokens (sum of declared max lengths)
    state: ServerState
    profile: str  # execution profile (device, dtype, library versions)
    seq: int  # strictly increasing per owner
    expires_at: float  # unix seconds (or virtual seconds in simulation)
    proofs: tuple[tuple[str, ...], ...] = ()  # Merkle proof of each block's hash
    signature: str = ""  # 0x + 65 bytes

    def _body(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("signature")
        d["state"] = int(self.state)
        d["proofs"] = [list(p) for p in self.proofs]
        return d

    def digest(self) -> bytes:
        return keccak(DOMAIN + json.dumps(self._body(), sort_keys=True).encode())

    def signed(self, private_key: bytes | str) -> ServerRecord:
        sig = Account.sign_message(encode_defunct(primitive=self.digest()), private_key)
        return replace(self, signature="0x" + bytes(sig.signature).hex())

    def signer(self) -> str:
        try:
            sig = bytes.fromhex(self.signature.removeprefix("0x"))
            addr = Account.recover_message(encode_defunct(primitive=self.digest()), signature=sig)
        except Exception as e:  # eth-keys raises several types for invalid signatures
            raise InvalidRecord(f"record of {self.owner}: bad signature ({e})") from e
        return to_checksum_address(addr)

    @property
    def n_blocks(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "signature": self.signature}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerRecord:
        try:
            rec = cls(
                owner=to_checksum_address(str(d["owner"])),
                url=str(d["url"]),
                model_root=str(d["model_root"]),
                start=int(d["start"]),
                end=int(d["end"]),
                throughput=float(d["throughput"]),
                cache_tokens_left=int(d["cache_tokens_left"]),
                state=ServerState(int(d["state"])),
                profile=str(d["profile"]),
                seq=int(d["seq"]),
                expires_at=float(d["expires_at"]),
                proofs=tuple(tuple(str(x) for x in p) for p in d["proofs"]),
                signature=str(d["signature"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidRecord(f"malformed record: {e}") from e
        if not (math.isfinite(rec.throughput) and math.isfinite(rec.expires_at)):
            raise InvalidRecord(f"record of {rec.owner}: non-finite number")
        return rec


IdentityCheck = Callable[[str], str | None]  # owner -> None if fine, else the reason


class RecordBook:
    """The records one party knows, each validated on the way in."""

    def __init__(
        self,
        manifest: Manifest,
        identity: IdentityCheck,
        ttl_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.manifest = manifest
        self.root = manifest.root
        self.identity = identity
        self.ttl_s = ttl_s
        self.clock = clock or time.time
        self._records: dict[str, ServerRecord] = {}
        self.rejected: list[tuple[str, str]] = []  # (owner, reason), newest last

    def check(self, rec: ServerRecord) -> None:
        """Raise :class:`InvalidRecord` with the reason, or return if ``rec`` is acceptable."""
        now = self.clock()
        if rec.signer() != rec.owner:
            raise InvalidRecord(f"record of {rec.owner}: signed by someone else")
        if rec.model_root != self.root:
            raise InvalidRecord(f"record of {rec.owner}: model root {rec.model_root}")
        if not 0 <= rec.start < rec.end <= self.manifest.n_blocks:
            raise InvalidRecord(f"record of {rec.owner}: bad span [{rec.start}, {rec.end})")
        if rec.expires_at <= now or rec.expires_at > now + self.ttl_s + MAX_SKEW_S:
            raise InvalidRecord(f"record of {rec.owner}: expired or beyond the TTL")
        if rec.throughput <= 0 or rec.cache_tokens_left < 0:
            raise InvalidRecord(f"record of {rec.owner}: negative capacity")
        if len(rec.proofs) != rec.n_blocks:
            raise InvalidRecord(f"record of {rec.owner}: {len(rec.proofs)} proofs")
        for i, proof in enumerate(rec.proofs):
            b = rec.start + i
            try:
                ok = self.manifest.check_block(
                    b, self.manifest.block_hashes[b], [bytes.fromhex(x) for x in proof]
                )
            except ValueError:
                ok = False
            if not ok:
                raise InvalidRecord(f"record of {rec.owner}: no proof for block {b}")
        old = self._records.get(rec.owner)
        if old is not None and rec.seq <= old.seq:
            raise InvalidRecord(f"record of {rec.owner}: seq {rec.seq} not above {old.seq}")
        reason = self.identity(rec.owner)
        if reason is not None:
            raise InvalidRecord(f"record of {rec.owner}: {reason}")

    def accept(self, rec: ServerRecord) -> bool:
        """Store ``rec`` if valid; an invalid one is recorded in :attr:`rejected`."""
        old = self._records.get(rec.owner)
        if old is not None and old.seq == rec.seq and old.signature == rec.signature:
            return False  # already known: gossip echoes are not errors
        try:
            self.check(rec)
        except InvalidRecord as e:
            self.rejected.append((rec.owner, str(e)))
            del self.rejected[:-1000]
            return False
        self._records[rec.owner] = rec
        return True

    def merge(self, recs: Iterable[ServerRecord]) -> int:
        return sum(self.accept(r) for r in recs)

    def live(self) -> list[ServerRecord]:
        """Unexpired records, by owner address."""
        now = self.clock()
        return [r for _, r in sorted(self._records.items()) if r.expires_at > now]

    def get(self, owner: str) -> ServerRecord | None:
        rec = self._records.get(owner)
        return rec if rec is not None and rec.expires_at > self.clock() else None


def block_proofs(manifest: Manifest, start: int, end: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(p.hex() for p in manifest.proof(b)) for b in range(start, end))
