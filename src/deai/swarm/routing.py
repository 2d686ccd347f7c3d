"""Routing of clients and block choice of servers, over validated records.

Clients (after Petals' ``RemoteSequenceManager``):

* :func:`latency_route` for generation: a shortest path over block boundaries ``0..n``
  where taking server ``s`` from block ``i`` to ``j`` costs ``rtt(s) + (j - i) /
  throughput(s)``, divided by ``s``'s reputation, so every token pays the fewest, fastest
  hops. Only ONLINE servers with cache room for ``max_length * (j - i)`` token-blocks.
* :func:`throughput_route` for forward/backward: at each boundary pick, among the servers
  covering it, one at random with weight ``throughput * reputation`` and take it to the
  end of its span, so training load spreads over the swarm in proportion to capacity.
* :class:`BanList`: a server that fails is skipped for ``base * 2^(strikes - 1)``
  seconds (capped); each success takes one strike off. Petals bans for a fixed time.

Servers (after Petals' ``block_selection``):

* :func:`choose_blocks`: serve the window whose swarm throughputs, sorted, are
  lexicographically smallest (the weakest window first);
* :func:`rebalance_target`: move only if the swarm's bottleneck throughput would rise by
  more than a factor ``1 / balance_quality`` (hysteresis); the server also waits a
  minimum interval between moves (Petals #389: rebalancing too often).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from deai.swarm.errors import MissingBlocks
from deai.swarm.records import ServerRecord, ServerState


@dataclass(frozen=True)
class Hop:
    owner: str  # server address
    url: str
    start: int  # first block of this hop
    end: int  # one past its last block

    @property
    def n_blocks(self) -> int:
        return self.end - self.start


def _usable(r: ServerRecord, exclude: set[str]) -> bool:
    return r.state is ServerState.ONLINE and r.owner not in exclude


def latency_route(
    records: Iterable[ServerRecord],
    start: int,
    end: int,
    *,
    rtt: Callable[[str], float],
    reputation: Callable[[str], float],
    exclude: set[str] | None = None,
    max_length: int = 0,
) -> list[Hop]:
    """Cheapest chain of hops covering blocks ``[start, end)``; :class:`MissingBlocks`."""
    exclude = exclude or set()
    recs = [r for r in records if _usable(r, exclude)]
    best: dict[int, float] = {start: 0.0}
    back: dict[int, tuple[int, ServerRecord]] = {}
    heap = [(0.0, start)]
    while heap:
        cost, i = heapq.heappop(heap)
        if i == end:
            break
        if cost > best.get(i, float("inf")):
            continue
        for r in recs:
            if not r.start <= i < r.end:
                continue
            rep = max(reputation(r.owner), 1e-6)
            for j in range(i + 1, min(r.end, end) + 1):
                if r.cache_tokens_left < max_length * (j - i):
                    break
                c = cost + (rtt(r.owner) + (j - i) / r.throughput) / rep
                if c < best.get(j, float("inf")):
                    best[j] = c
                    back[j] = (i, r)
                    heapq.heappush(heap, (c, j))
    if end not in best:
        reach = max(best)
        raise MissingBlocks(reach, end, f"{len(recs)} usable servers")
    hops: list[Hop] = []
    j = end
    while j != start:
        i, r = back[j]
        hops.append(Hop(r.owner, r.url, i, j))
        j = i
    return hops[::-1]


def throughput_route(
    records: Iterable[ServerRecord],
    start: int,
    end: int,
    *,
    rng: random.Random,
    reputation: Callable[[str], float],
    exclude: set[str] | None = None,
) -> list[Hop]:
    """Hops covering ``[start, end)`` drawn with weight ``throughput * reputation``."""
    exclude = exclude or set()
    recs = [r for r in records if _usable(r, exclude)]
    hops: list[Hop] = []
    i = start
    while i < end:
        cands = [r for r in recs if r.start <= i < r.end]
        if not cands:
            raise MissingBlocks(i, end, f"{len(recs)} usable servers")
        weights = [r.throughput * max(reputation(r.owner), 1e-6) for r in cands]
        r = rng.choices(cands, weights=weights)[0]
        j = min(r.end, end)
        hops.append(Hop(r.owner, r.url, i, j))
        i = j
    return hops


class BanList:
    """Exponential back-off bans, per server."""

    def __init__(
        self, clock: Callable[[], float], base_s: float = 1.0, max_s: float = 300.0
    ) -> None:
        self.clock = clock
        self.base_s = base_s
        self.max_s = max_s
        self._strikes: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self.log: list[tuple[float, str, str]] = []  # (time, server, reason)

    def ban(self, owner: str, reason: str) -> float:
        """Ban ``owner``; return the ban's length in seconds."""
        s = self._strikes.get(owner, 0) + 1
        self._strikes[owner] = s
        length = min(self.max_s, self.base_s * 2 ** (s - 1))
        self._until[owner] = self.clock() + length
        self.log.append((self.clock(), owner, reason))
        return length

    def ban_forever(self, owner: str, reason: str) -> None:
        self._until[owner] = float("inf")
        self.log.append((self.clock(), owner, reason))

    def success(self, owner: str) -> None:
        if self._strikes.get(owner, 0) > 0:
            self._strikes[owner] -= 1

    def banned(self) -> set[str]:
        now = self.clock()
        return {o for o, t in self._until.items() if t > now}

    def is_banned(self, owner: str) -> bool:
        return self._until.get(owner, 0.0) > self.clock()


def block_throughputs(
    records: Iterable[ServerRecord], n_blocks: int, exclude_owner: str | None = None
) -> list[float]:
    """Sum of throughputs of the servers holding each block (JOINING counts: it will)."""
    t = [0.0] * n_blocks
    for r in records:
        if r.owner == exclude_owner or r.state is ServerState.OFFLINE:
            continue
        for b in range(r.start, min(r.end, n_blocks)):
            t[b] += r.throughput
    return t


def choose_blocks(throughputs: Sequence[float], n_serve: int) -> int:
    """Start of the window of ``n_serve`` blocks with the weakest sorted throughputs."""
    n = len(throughputs)
    n_serve = min(n_serve, n)
    windows = range(n - n_serve + 1)
    return min(windows, key=lambda s: (sorted(throughputs[s : s + n_serve]), s))


def rebalance_target(
    records: Iterable[ServerRecord], n_blocks: int, me: ServerRecord, balance_quality: float
) -> int | None:
    """Where ``me`` should move, or None if the gain is within the hysteresis band."""
    others = block_throughputs(records, n_blocks, exclude_owner=me.owner)
    now = list(others)
    for b in range(me.start, me.end):
        now[b] += me.throughput
    target = choose_blocks(others, me.n_blocks)
    if target == me.start:
        return None
    moved = list(others)
    for b in range(target, target + me.n_blocks):
        moved[b] += me.throughput
    new_min, cur_min = min(moved), min(now)
    if new_min <= 0:
        return None
    return target if cur_min / new_min < balance_quality else None
