"""Communication graphs and gossip mixing matrices for decentralized SGD.

Mixing weights are Metropolis–Hastings (Xiao & Boyd 2004; Boyd et al. 2006):
``W_jk = 1 / (1 + max(deg_j, deg_k))`` on each edge and ``W_jj = 1 - sum_k W_jk``, which is
symmetric and doubly stochastic for any undirected graph. The spectral gap
``1 - |lambda_2(W)|`` governs how fast gossip reaches consensus: after t rounds of pure
mixing the distance to the average shrinks like ``|lambda_2|^t``. An exponential graph
(Ying et al. 2021) has a far larger gap than a ring of the same size at only
``O(log n)`` neighbours each.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError


class TopologyName(StrEnum):
    RING = "ring"
    TORUS = "torus"  # 2-D torus, as square as n allows
    EXPONENTIAL = "exponential"  # neighbours at distance 2^k (both directions)
    COMPLETE = "complete"
    RANDOM = "random"  # time-varying: a fresh random graph each round, from a public seed


def edges(name: TopologyName, n: int, round_: int = 0, seed: int = 0) -> set[tuple[int, int]]:
    """Undirected edge set ``{(j, k), j < k}``; ``round_``/``seed`` only matter for RANDOM."""
    if n < 2:
        raise ConfigError(f"a gossip topology needs at least 2 nodes, got {n}")
    pairs: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        if a != b:
            pairs.add((min(a, b), max(a, b)))

    if name is TopologyName.RING:
        for j in range(n):
            add(j, (j + 1) % n)
    elif name is TopologyName.TORUS:
        rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
        cols = n // rows
        if rows < 2:
            raise ConfigError(f"torus needs n with a factor >= 2 (n = rows x cols); got n={n}")
        for j in range(n):
            r, c = divmod(j, cols)
            add(j, r * cols + (c + 1) % cols)
            add(j, ((r + 1) % rows) * cols + c)
    elif name is TopologyName.EXPONENTIAL:
        for j in range(n):
            for k in range(max(1, math.ceil(math.log2(n)))):
                add(j, (j + 2**k) % n)
    elif name is TopologyName.COMPLETE:
        for j in range(n):
            for k in range(j + 1, n):
                add(j, k)
    else:
        # a random ring order plus one random chord per node: connected, degree ~4
        rng = np.random.default_rng([seed, round_])
        order = rng.permutation(n)
        for a in range(n):
            add(int(order[a]), int(order[(a + 1) % n]))
            add(a, int(rng.integers(n)))
    return pairs


def neighbours(pairs: set[tuple[int, int]], n: int) -> list[list[int]]:
    nb: list[list[int]] = [[] for _ in range(n)]
    for a, b in sorted(pairs):
        nb[a].append(b)
        nb[b].append(a)
    return nb


def metropolis_hastings(pairs: set[tuple[int, int]], n: int) -> Tensor:
    """Symmetric doubly-stochastic ``[n, n]`` mixing matrix (float64)."""
    deg = [len(x) for x in neighbours(pairs, n)]
    w = torch.zeros((n, n), dtype=torch.float64)
    for a, b in pairs:
        w[a, b] = w[b, a] = 1.0 / (1.0 + max(deg[a], deg[b]))
    w += torch.diag(1.0 - w.sum(dim=1))
    return w


def mixing_matrix(name: TopologyName, n: int, round_: int = 0, seed: int = 0) -> Tensor:
    return metropolis_hastings(edges(name, n, round_, seed), n)


def spectral_gap(w: Tensor) -> float:
    """``1 - |lambda_2|`` of a symmetric mixing matrix."""
    eig = torch.linalg.eigvalsh(w.to(torch.float64)).abs().sort(descending=True).values
    return float(1.0 - eig[1]) if len(eig) > 1 else 1.0


def consensus_distance(stack: Tensor) -> float:
    """Root mean squared distance of each node's parameters to their average."""
    mean = stack.mean(dim=0, keepdim=True)
    return float(((stack - mean) ** 2).sum(dim=1).mean().sqrt())
