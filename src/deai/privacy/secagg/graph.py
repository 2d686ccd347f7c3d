"""Who masks with whom.

Full SecAgg (Bonawitz et al. 2017) pairs every client with every other. SecAgg+ (Bell,
Bonawitz, Gascón, Lepoint, Raykova, CCS 2020) pairs each client only with its ``k``
neighbours in a random Harary graph ``H(k, n)``: clients are placed on a ring in an order
drawn from a public seed, and each is joined to the ``k / 2`` nearest on either side.
Masks and Shamir shares then cost O(k) per client instead of O(n); privacy holds as long
as the honest clients' subgraph stays connected and each neighbourhood keeps fewer than
``t`` colluders (Bell et al., Section 4), which a seed unknown in advance makes likely.
Everyone recomputes the same graph from the public seed; nobody needs to trust the server.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from deai.errors import ConfigError


@lru_cache(maxsize=64)
def neighbours(n: int, degree: int | None, seed: bytes) -> tuple[frozenset[int], ...]:
    """Neighbour set of each client ``0..n-1`` (indexed by client); ``degree=None`` or
    ``degree >= n - 1`` means the complete graph. Cached: the same graph is shared."""
    if n < 2:
        raise ConfigError(f"secure aggregation needs at least 2 clients, got {n}")
    if degree is None or degree >= n - 1:
        everyone = frozenset(range(n))
        return tuple(everyone - {u} for u in range(n))
    if degree < 2 or degree % 2:
        raise ConfigError(f"SecAgg+ degree must be even and >= 2, got {degree}")
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "little"))
    order = [int(v) for v in rng.permutation(n)]
    pos = {u: i for i, u in enumerate(order)}
    half = degree // 2
    return tuple(
        frozenset(order[(pos[u] + j) % n] for j in range(-half, half + 1) if j != 0)
        for u in range(n)
    )
