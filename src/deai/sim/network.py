"""A network model for the in-memory transport.

Each node has an uplink and a downlink bandwidth and a one-way latency. A message of
``b`` bytes from ``s`` to ``r`` occupies ``s``'s uplink for ``8b / up_s`` seconds (FIFO after
what ``s`` is already sending), travels ``lat_s + lat_r``, and occupies ``r``'s downlink for
``8b / down_r`` seconds (FIFO), pipelined with the upload: alone on both links it arrives
after ``lat_s + lat_r + 8b / min(up_s, down_r)``. Many providers uploading to one validator
therefore queue on the validator's downlink, which is the parameter-server bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deai.job.spec import derive_seed


@dataclass(frozen=True)
class LinkProfile:
    up_bps: float  # uplink, bits per second
    down_bps: float  # downlink, bits per second
    latency_s: float  # one-way latency to the network core
    samples_per_s: float  # training throughput (examples per second) for simulated compute
    slowdown: float = 1.0  # straggler factor on compute time


@dataclass(frozen=True)
class NetworkConfig:
    bandwidth_mbps: tuple[float, float] = (10.0, 100.0)  # each node draws uniformly in range
    latency_ms: tuple[float, float] = (10.0, 50.0)  # one-way, uniform in range
    samples_per_s: float = 2000.0  # provider compute speed for simulated time
    dropout: float = 0.0  # chance a provider is unreachable in a given round
    straggler_fraction: float = 0.0  # share of providers that compute slowly
    straggler_slowdown: float = 4.0  # how slowly
    server_bandwidth_mbps: float = 1000.0  # validators and requesters sit in a data centre


def draw_profiles(
    config: NetworkConfig, providers: list[str], servers: list[str], seed: int
) -> dict[str, LinkProfile]:
    rng = np.random.default_rng(derive_seed(seed, "network"))
    n_slow = round(config.straggler_fraction * len(providers))
    slow = set(rng.choice(len(providers), size=n_slow, replace=False).tolist()) if n_slow else set()
    out: dict[str, LinkProfile] = {}
    # one vector of draws, in the order one (bandwidth, latency) pair per provider would
    # consume them: the same profiles as drawing them one by one, at 100,000 providers
    raw = rng.random(2 * len(providers))
    (b_lo, b_hi), (l_lo, l_hi) = config.bandwidth_mbps, config.latency_ms
    bws = ((b_lo + (b_hi - b_lo) * raw[0::2]) * 1e6).tolist()
    lats = ((l_lo + (l_hi - l_lo) * raw[1::2]) / 1e3).tolist()
    for i, p in enumerate(providers):
        out[p] = LinkProfile(
            up_bps=bws[i],
            down_bps=bws[i],
            latency_s=lats[i],
            samples_per_s=config.samples_per_s,
            slowdown=config.straggler_slowdown if i in slow else 1.0,
        )
    for s in servers:
        bw = config.server_bandwidth_mbps * 1e6
        out[s] = LinkProfile(bw, bw, config.latency_ms[0] / 1e3, config.samples_per_s * 10)
    return out


class NetworkModel:
    """Tracks when each node's uplink and downlink are next free."""

    def __init__(self, profiles: dict[str, LinkProfile]) -> None:
        self.profiles = profiles
        self._up_free: dict[str, float] = {}
        self._down_free: dict[str, float] = {}

    def transfer(self, src: str, dst: str, nbytes: int, now: float) -> float:
        """Schedule a transfer; return its arrival time."""
        s, r = self.profiles[src], self.profiles[dst]
        start_up = max(now, self._up_free.get(src, 0.0))
        end_up = start_up + 8.0 * nbytes / s.up_bps
        self._up_free[src] = end_up
        lat = s.latency_s + r.latency_s
        start_down = max(start_up + lat, self._down_free.get(dst, 0.0))
        end_down = max(start_down + 8.0 * nbytes / r.down_bps, end_up + lat)
        self._down_free[dst] = end_down
        return end_down

    def compute_time(self, node: str, samples: int) -> float:
        p = self.profiles[node]
        return samples / p.samples_per_s * p.slowdown


class FaultModel:
    """Injects provider drop-outs through the transport: while a node is down in a round,
    every message carrying that round to or from it is lost."""

    def __init__(self, dropout: float, seed: int, nodes: set[str]) -> None:
        self.dropout = dropout
        self.seed = seed
        self.nodes = nodes  # only these may drop out (providers)

    def is_down(self, node: str, round_: int) -> bool:
        if self.dropout <= 0 or node not in self.nodes:
            return False
        return derive_seed(self.seed, "dropout", node, round_) / 2**63 < self.dropout

    def drops(self, src: str, dst: str, round_: int | None) -> bool:
        return round_ is not None and (self.is_down(src, round_) or self.is_down(dst, round_))
