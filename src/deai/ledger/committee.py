"""Stake-weighted committee draw, an exact mirror of ``Registry.draw`` and of the seed
``Jobs.draw_round`` uses.

A round opens at block B; its seed is ``keccak256(abi.encode(job, round, blockhash(B)))``,
drawn by anyone from block B + 1 on: whoever opens the round (requester, finalize caller)
sends before B's hash exists, so it cannot grind the seed by bumping job ids or reverting.
If a node changed its own stake or roles after B (it could have read the seed first), the
draw re-arms the seed at the current block instead.

Seat i (0-based) takes ``r_i = uint256(keccak256(abi.encode(seed, i))) mod W`` where W is
the total validator stake, then the first slot (Registry tree order) whose running stake
exceeds ``r_i``: sampling *with* replacement, each seat proportional to stake, so an
identity may hold several seats and splitting a stake into many identities changes the
seat distribution not at all. Bias: only the proposer of block B can choose among block
variants (and so hashes); see docs/ledger.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak


def round_seed(job_id: int, round_index: int, seed_block_hash: bytes) -> bytes:
    """The seed ``Jobs.draw_round`` stores for a round whose seed block has this hash."""
    return keccak(encode(["uint256", "uint256", "bytes32"], [job_id, round_index, seed_block_hash]))


def draw_committee(seed: bytes, slots: Sequence[tuple[str, int]], size: int) -> list[str]:
    """Draw ``size`` seats with replacement from ``(address, weight)`` slots in tree order
    (weight 0 for empty slots); returns the seat holders in draw order."""
    total = sum(w for _, w in slots)
    if total == 0:
        return []
    out: list[str] = []
    for i in range(size):
        r = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % total
        acc = 0
        for address, w in slots:
            acc += w
            if r < acc:
                out.append(address)
                break
    return out


def seat_counts(seats: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct members in first-drawn order and their seat counts, as Jobs stores them."""
    members: list[str] = []
    counts: list[int] = []
    for who in seats:
        if who in members:
            counts[members.index(who)] += 1
        else:
            members.append(who)
            counts.append(1)
    return members, counts
