"""Signed receipts for span calls, and payment vouchers.

A server signs a receipt for every call it answers::

    leaf_k = keccak256(abi.encode(uint256 k, uint256 position_k, bytes32 in_hash_k,
                                  bytes32 out_row_hash_k))
    rows_root = sorted-pair Merkle root over the leaves (deai.ledger.merkle)
    digest = keccak256(abi.encode(RECEIPT_TAG, ledger, server, client, session, call,
                                  model_root, keccak(profile), start, end, codec,
                                  first_position, n_rows, rows_root))

signed EIP-191 (``personal_sign`` of the digest), the same scheme ``SwarmLedger.vy``
checks with ``ecrecover``. Row ``k`` is batch row ``k // T``, position
``first_position + k % T``; ``in_hash`` is the input hash of that row's history
(:func:`deai.swarm.wire.chain_hashes`), ``out_row_hash`` the keccak of the fixed-point
output row. So a receipt is the server's signed claim "on the history named ``in_hash``
blocks ``[start, end)`` of model ``model_root`` give this row", one per token: it is what
the client pays for (tokens x blocks) and what a dispute on chain can hold against the
server. The client checks every receipt against the rows it sent and received before it
accepts an answer.

Vouchers settle payment in batches: the client signs, per server, the *cumulative* wei it
owes, ``keccak256(abi.encode(VOUCHER_TAG, ledger, client, server, cumulative))``; the
server redeems its latest voucher on chain whenever it likes and is paid
``cumulative - already_paid`` from the client's deposit. A client that stops signing
loses that server (it refuses service beyond a credit window).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from deai.errors import InvalidMessage
from deai.ledger.merkle import MerkleTree

RECEIPT_TAG = keccak(b"deai/swarm/receipt/v1")
VOUCHER_TAG = keccak(b"deai/swarm/voucher/v1")
NO_LEDGER = "0x0000000000000000000000000000000000000000"


def _sign(digest: bytes, private_key: bytes | str) -> str:
    sig = Account.sign_message(encode_defunct(primitive=digest), private_key)
    return "0x" + bytes(sig.signature).hex()


def _recover(digest: bytes, signature: str) -> str:
    try:
        addr = Account.recover_message(
            encode_defunct(primitive=digest), signature=bytes.fromhex(signature.removeprefix("0x"))
        )
    except Exception as e:  # eth-keys raises several types for invalid signatures
        raise InvalidMessage(f"signature does not recover: {e}") from e
    return to_checksum_address(addr)


def split_signature(signature: str) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte signature, as ``ecrecover`` takes them."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if len(raw) != 65:
        raise InvalidMessage("signature must be 65 bytes")
    return raw[64], raw[:32], raw[32:64]


def profile_hash(profile: str) -> bytes:
    return keccak(profile.encode())


def row_leaf(k: int, position: int, in_hash: bytes, out_hash: bytes) -> bytes:
    return keccak(
        encode(["uint256", "uint256", "bytes32", "bytes32"], [k, position, in_hash, out_hash])
    )


@dataclass(frozen=True)
class RowClaim:
    """One row of a call: what a dispute needs."""

    k: int  # row index within the call
    position: int  # sequence position of the row
    in_hash: bytes  # input hash of the row's history
    out_hash: bytes  # keccak of the fixed-point output row

    def leaf(self) -> bytes:
        return row_leaf(self.k, self.position, self.in_hash, self.out_hash)


def rows_tree(claims: list[RowClaim]) -> MerkleTree:
    return MerkleTree([c.leaf() for c in claims])


def claims_for(
    first_position: int, seq_len: int, in_hashes: list[bytes], out_hashes: list[bytes]
) -> list[RowClaim]:
    """Row claims of a call with rows flattened batch-major (``k = b * T + t``)."""
    return [
        RowClaim(k, first_position + k % seq_len, in_hashes[k], out_hashes[k])
        for k in range(len(out_hashes))
    ]


@dataclass(frozen=True)
class Receipt:
    ledger: str  # swarm ledger contract (NO_LEDGER when none)
    server: str  # signer
    client: str  # who asked
    session: str  # 0x + 32 bytes: the session (or request) id
    call: int  # index of the call in the session
    model_root: str  # manifest root
    profile: str  # execution profile the server claims
    start: int  # blocks [start, end)
    end: int
    codec: int  # ActCodec of the output
    first_position: int  # position of the first row
    n_rows: int  # rows answered (tokens); a client pays n_rows * (end - start)
    rows_root: str  # 0x + Merkle root of the row leaves
    signature: str = ""

    def digest(self) -> bytes:
        return keccak(
            encode(
                [
                    "bytes32", "address", "address", "address", "bytes32", "uint256",
                    "bytes32", "bytes32", "uint256", "uint256", "uint256", "uint256",
                    "uint256", "bytes32",
                ],
                [
                    RECEIPT_TAG, self.ledger, self.server, self.client,
                    bytes.fromhex(self.session.removeprefix("0x")), self.call,
                    bytes.fromhex(self.model_root.removeprefix("0x")),
                    profile_hash(self.profile), self.start, self.end, self.codec,
                    self.first_position, self.n_rows,
                    bytes.fromhex(self.rows_root.removeprefix("0x")),
                ],
            )
        )  # fmt: skip

    def signed(self, private_key: bytes | str) -> Receipt:
        return replace(self, signature=_sign(self.digest(), private_key))

    def signer(self) -> str:
        return _recover(self.digest(), self.signature)

    @property
    def units(self) -> int:
        """What the client pays for: tokens x blocks."""
        return self.n_rows * (self.end - self.start)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Receipt:
        try:
            return cls(
                ledger=to_checksum_address(str(d["ledger"])),
                server=to_checksum_address(str(d["server"])),
                client=to_checksum_address(str(d["client"])),
                session=str(d["session"]),
                call=int(str(d["call"])),
                model_root=str(d["model_root"]),
                profile=str(d["profile"]),
                start=int(str(d["start"])),
                end=int(str(d["end"])),
                codec=int(str(d["codec"])),
                first_position=int(str(d["first_position"])),
                n_rows=int(str(d["n_rows"])),
                rows_root=str(d["rows_root"]),
                signature=str(d["signature"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidMessage(f"malformed receipt: {e}") from e


def voucher_digest(ledger: str, client: str, server: str, cumulative: int) -> bytes:
    return keccak(
        encode(
            ["bytes32", "address", "address", "address", "uint256"],
            [VOUCHER_TAG, ledger, client, server, cumulative],
        )
    )


@dataclass(frozen=True)
class Voucher:
    ledger: str
    client: str
    server: str
    cumulative: int  # wei owed in total so far
    signature: str = ""

    def digest(self) -> bytes:
        return voucher_digest(self.ledger, self.client, self.server, self.cumulative)

    def signed(self, private_key: bytes | str) -> Voucher:
        return replace(self, signature=_sign(self.digest(), private_key))

    def signer(self) -> str:
        return _recover(self.digest(), self.signature)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Voucher:
        try:
            return cls(
                to_checksum_address(str(d["ledger"])),
                to_checksum_address(str(d["client"])),
                to_checksum_address(str(d["server"])),
                int(str(d["cumulative"])),
                str(d["signature"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidMessage(f"malformed voucher: {e}") from e


class Tally:
    """A client's running account with each server.

    Units (tokens x blocks) of an accepted call are *pending* until the client has decided
    whether to re-check that work (at the end of its session, or right after a stateless
    call); then they are *confirmed* and vouchers cover them. A server caught cheating has
    its pending units dropped and is never paid another voucher, so a detected lie is
    unpaid work; the server's credit window must therefore cover one session.
    """

    def __init__(self, ledger: str, client: str, key: bytes | str, price_wei: int) -> None:
        self.ledger = ledger
        self.client = client
        self._key = key
        self.price_wei = price_wei  # per token-block
        self.units: dict[str, int] = {}  # confirmed
        self.pending: dict[str, int] = {}
        self.withheld: set[str] = set()  # servers caught cheating: never paid again

    def add(self, receipt: Receipt) -> None:
        self.pending[receipt.server] = self.pending.get(receipt.server, 0) + receipt.units

    def confirm(self, servers: set[str] | None = None) -> None:
        """Move pending units to confirmed (all servers, or only ``servers``)."""
        for server in list(self.pending):
            if servers is not None and server not in servers:
                continue
            n = self.pending.pop(server)
            if server not in self.withheld:
                self.units[server] = self.units.get(server, 0) + n

    def withhold(self, server: str) -> None:
        self.withheld.add(server)
        self.pending.pop(server, None)

    def owed(self, server: str) -> int:
        return self.units.get(server, 0) * self.price_wei

    def voucher(self, server: str) -> Voucher | None:
        if server in self.withheld:
            return None
        return Voucher(self.ledger, self.client, server, self.owed(server)).signed(self._key)
