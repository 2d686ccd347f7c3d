"""Stake-weighted committee draw, an exact mirror of ``Registry.draw``.

Seed of round r of job j: ``keccak256(abi.encode(j, r, blockhash(opening_block - 1)))``:
anyone can recompute it from the chain. Draw i (0-based) takes
``r_i = uint256(keccak256(abi.encode(seed, i))) mod W`` where W is the stake not yet
drawn, then walks the candidates in registry order (skipping drawn ones) and takes the
first whose running stake exceeds ``r_i``: sampling without replacement, each draw
proportional to stake. Assumption: the block proposer of the opening block could bias the
seed by withholding a block; stake weighting bounds what a Sybil gains from splitting.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak


def round_seed(job_id: int, round_index: int, prev_block_hash: bytes) -> bytes:
    """The seed ``Jobs.vy`` stores when it opens a round."""
    return keccak(encode(["uint256", "uint256", "bytes32"], [job_id, round_index, prev_block_hash]))


def draw_committee(
    seed: bytes, candidates: Sequence[tuple[str, int]], size: int, min_stake: int
) -> list[str]:
    """Draw ``min(size, eligible)`` members from ``(address, stake)`` pairs in registry
    order; candidates below ``min_stake`` are not eligible."""
    eligible = [(a, s) for a, s in candidates if s >= min_stake]
    weights = [s for _, s in eligible]
    total = sum(weights)
    out: list[str] = []
    for i in range(min(size, len(eligible))):
        r = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % total
        acc = 0
        for j, w in enumerate(weights):
            if w == 0:
                continue
            acc += w
            if r < acc:
                out.append(eligible[j][0])
                total -= w
                weights[j] = 0
                break
    return out
