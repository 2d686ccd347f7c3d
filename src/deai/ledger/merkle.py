"""Payout Merkle trees: plain trees over leaf hashes and the Merkle-sum payout tree that
``Jobs.vy`` checks on claim.

Payout leaf: ``(keccak256(abi.encode(LEAF_TAG, job_id, index, account, amount)), amount)``
where ``index`` is the leaf's position (accounts sorted by checksum address) and
``LEAF_TAG = keccak256("deai.jobs.leaf")``. Inner node of children ``(ha, sa)`` and
``(hb, sb)`` with ``ha < hb``: ``(keccak256(abi.encode(ha, sa, hb, sb)), sa + sb)``; a
level with an odd count carries its last node up unchanged. The root hash is what a round
result publishes; its sum must equal the job's settled total, so the sum of every leaf a
claim can prove is at most that total (sums are non-negative and bound into every hash:
lying about one sibling's sum changes the hash). A proof is a flat list of 32-byte words:
the leaf index, then (sibling hash, sibling sum) per level.

Amounts are cumulative over the job: each settled round publishes a new root over every
provider's total so far, replacing the previous one; claims open once the job is done and
pay each leaf of the final root once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from deai.errors import ConfigError

LEAF_TAG = keccak(b"deai.jobs.leaf")


def payout_leaf(job_id: int, account: str, cumulative: int, index: int = 0) -> bytes:
    """The leaf hash the contract recomputes in ``claim``."""
    return keccak(
        encode(
            ["bytes32", "uint256", "uint256", "address", "uint256"],
            [LEAF_TAG, job_id, index, account, cumulative],
        )
    )


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Sorted-pair inner node of a plain tree."""
    return keccak(a + b) if a < b else keccak(b + a)


def sum_pair(a: tuple[bytes, int], b: tuple[bytes, int]) -> tuple[bytes, int]:
    """Sorted-pair inner node of a Merkle-sum tree."""
    lo, hi = (a, b) if a[0] < b[0] else (b, a)
    node = keccak(encode(["bytes32", "uint256", "bytes32", "uint256"], [*lo, *hi]))
    return node, a[1] + b[1]


def verify(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Check a plain-tree proof."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


def verify_sum(
    job_id: int, account: str, amount: int, proof: Sequence[bytes], root: bytes, total: int
) -> bool:
    """Check a payout proof exactly as ``Jobs.claim`` does."""
    if len(proof) % 2 != 1:
        return False
    index = int.from_bytes(proof[0], "big")
    node = (payout_leaf(job_id, account, amount, index), amount)
    for k in range(1, len(proof), 2):
        node = sum_pair(node, (proof[k], int.from_bytes(proof[k + 1], "big")))
    return node == (root, total)


@dataclass
class MerkleTree:
    """A tree over leaf hashes, in the given order. ``levels[0]`` are the leaves."""

    leaves: list[bytes]
    levels: list[list[bytes]] = field(init=False)

    def __post_init__(self) -> None:
        if not self.leaves:
            raise ConfigError("a Merkle tree needs at least one leaf")
        levels = [list(self.leaves)]
        while len(levels[-1]) > 1:
            cur = levels[-1]
            nxt = [hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            levels.append(nxt)
        self.levels = levels

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """Siblings from the leaf at ``index`` up to the root."""
        if not 0 <= index < len(self.leaves):
            raise ConfigError(f"leaf index {index} out of range 0..{len(self.leaves) - 1}")
        out: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


class PayoutTree:
    """Payouts of one job: ``{account: cumulative wei}`` -> Merkle-sum root and proofs.

    Accounts are sorted by checksum address so every validator derives the same root
    from the same payout map.
    """

    def __init__(self, job_id: int, payouts: Mapping[str, int]) -> None:
        if not payouts:
            raise ConfigError("payouts must not be empty")
        for account, amount in payouts.items():
            if amount < 0:
                raise ConfigError(f"negative payout {amount} for {account}")
        self.job_id = job_id
        self.amounts = {to_checksum_address(a): int(v) for a, v in payouts.items()}
        self.accounts = sorted(self.amounts)
        self._index = {a: i for i, a in enumerate(self.accounts)}
        level = [
            (payout_leaf(job_id, a, self.amounts[a], i), self.amounts[a])
            for i, a in enumerate(self.accounts)
        ]
        self.levels = [level]
        while len(level) > 1:
            nxt = [sum_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def root(self) -> bytes:
        return self.levels[-1][0][0]

    @property
    def total(self) -> int:
        return self.levels[-1][0][1]

    def index(self, account: str) -> int:
        key = to_checksum_address(account)
        if key not in self._index:
            raise ConfigError(f"{account} has no payout in job {self.job_id}")
        return self._index[key]

    def proof(self, account: str) -> list[bytes]:
        """The proof words for ``account``'s leaf: index, then (hash, sum) per level."""
        i = self.index(account)
        out = [i.to_bytes(32, "big")]
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                out += [level[sibling][0], level[sibling][1].to_bytes(32, "big")]
            i //= 2
        return out

    def amount(self, account: str) -> int:
        return self.amounts[to_checksum_address(account)]
