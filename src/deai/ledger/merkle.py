"""Payout Merkle trees, matching ``Jobs.vy``.

Leaf: ``keccak256(abi.encode(job_id, account, cumulative))`` (96 bytes, so a leaf can never
be mistaken for a 64-byte inner node). Inner node: ``keccak256(min(a, b) ++ max(a, b))``
(sorted pairs, as in OpenZeppelin's MerkleProof), so a proof is just the list of
siblings. A level with an odd count carries its last node up unchanged.

Amounts are cumulative over the job: each settled round publishes a new root over every
provider's total so far, replacing the previous one, and a claim pays
``cumulative - already_claimed``. One claim at the end therefore suffices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from deai.errors import ConfigError


def payout_leaf(job_id: int, account: str, cumulative: int) -> bytes:
    """The leaf hash the contract recomputes in ``claim``."""
    return keccak(encode(["uint256", "address", "uint256"], [job_id, account, cumulative]))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Sorted-pair inner node."""
    return keccak(a + b) if a < b else keccak(b + a)


def verify(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Check a proof exactly as the contract does."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


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
    """Cumulative payouts of one job: ``{account: cumulative wei}`` -> root and proofs.

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
        self.tree = MerkleTree([payout_leaf(job_id, a, self.amounts[a]) for a in self.accounts])

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def total(self) -> int:
        return sum(self.amounts.values())

    def proof(self, account: str) -> list[bytes]:
        """The proof for ``account``'s leaf."""
        key = to_checksum_address(account)
        if key not in self._index:
            raise ConfigError(f"{account} has no payout in job {self.job_id}")
        return self.tree.proof(self._index[key])

    def amount(self, account: str) -> int:
        return self.amounts[to_checksum_address(account)]
