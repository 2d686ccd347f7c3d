"""Seeded partitioners: who holds which training examples.

Each returns one index array per provider into the training split. Skew is measurable:
:func:`label_skew` gives the mean total-variation distance between each provider's label
distribution and the global one (0 for perfectly IID, approaching 1 - 1/k for one class each).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from deai.errors import ConfigError


class PartitionName(StrEnum):
    IID = "iid"  # uniform random split, equal sizes
    DIRICHLET = "dirichlet"  # label skew: class proportions per provider ~ Dir(alpha)
    SHARDS = "shards"  # sort by label, deal out shards (McMahan et al. 2017)
    QUANTITY = "quantity"  # IID labels, sizes ~ Dir(alpha) (quantity skew)
    RARE_CLASS = "rare_class"  # the last provider alone holds the highest class; rest IID


@dataclass(frozen=True)
class PartitionConfig:
    name: PartitionName = PartitionName.IID
    alpha: float = 0.5  # Dirichlet concentration (dirichlet, quantity); smaller = more skew
    shards_per_provider: int = 2  # shards partitioner only
    min_size: int = 2  # every provider gets at least this many examples


def partition(
    labels: np.ndarray, n_providers: int, config: PartitionConfig, seed: int
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` among ``n_providers``; deterministic given ``seed``."""
    n = len(labels)
    if n_providers < 1:
        raise ConfigError(f"need at least one provider, got {n_providers}")
    if n < n_providers * config.min_size:
        raise ConfigError(
            f"{n} training examples cannot give {n_providers} providers at least "
            f"{config.min_size} each; use fewer providers or a larger dataset"
        )
    if config.alpha <= 0:
        raise ConfigError(f"alpha must be > 0, got {config.alpha}")
    rng = np.random.default_rng(seed)
    if config.name is PartitionName.IID:
        parts = np.array_split(rng.permutation(n), n_providers)
    elif config.name is PartitionName.DIRICHLET:
        parts = _dirichlet(labels, n_providers, config.alpha, rng)
    elif config.name is PartitionName.SHARDS:
        parts = _shards(labels, n_providers, config.shards_per_provider, rng)
    elif config.name is PartitionName.RARE_CLASS:
        parts = _rare_class(labels, n_providers, config.min_size, rng)
    else:
        sizes = _quantity_sizes(n, n_providers, config.alpha, config.min_size, rng)
        parts = np.split(rng.permutation(n), np.cumsum(sizes)[:-1])
    parts = _ensure_min_size(parts, config.min_size, rng)
    return [np.sort(p).astype(np.int64) for p in parts]


def _dirichlet(
    labels: np.ndarray, m: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    buckets: list[list[int]] = [[] for _ in range(m)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        props = rng.dirichlet(np.full(m, alpha))
        cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
        for j, chunk in enumerate(np.split(idx, cuts)):
            buckets[j].extend(chunk.tolist())
    return [np.asarray(b, dtype=np.int64) for b in buckets]


def _shards(labels: np.ndarray, m: int, per: int, rng: np.random.Generator) -> list[np.ndarray]:
    if per < 1:
        raise ConfigError(f"shards_per_provider must be >= 1, got {per}")
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, m * per)
    assignment = rng.permutation(m * per)
    return [
        np.concatenate([shards[s] for s in assignment[j * per : (j + 1) * per]]) for j in range(m)
    ]


def _rare_class(
    labels: np.ndarray, m: int, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Every example of the highest label goes to the last provider (the only holder of a
    class the others lack); the other examples are split IID among all ``m``."""
    if m < 2:
        raise ConfigError(f"partition rare_class needs at least 2 providers, got {m}")
    rare = np.flatnonzero(labels == labels.max())
    common = np.flatnonzero(labels != labels.max())
    if len(common) < m * min_size:
        raise ConfigError(
            f"partition rare_class: {len(rare)} examples of the rare class and {len(common)}"
            f" others cannot give {m} providers at least {min_size} each"
        )
    parts = np.array_split(rng.permutation(common), m)
    parts[-1] = np.concatenate([parts[-1], rare])
    return parts


def _quantity_sizes(
    n: int, m: int, alpha: float, min_size: int, rng: np.random.Generator
) -> np.ndarray:
    spare = n - m * min_size
    raw = rng.dirichlet(np.full(m, alpha)) * spare
    sizes = np.floor(raw).astype(int) + min_size
    sizes[np.argmax(raw - np.floor(raw))] += n - sizes.sum()  # exact total
    return sizes


def _ensure_min_size(
    parts: list[np.ndarray], min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Move examples from the largest parts to any part below ``min_size``."""
    parts = [p.copy() for p in parts]
    for j in range(len(parts)):
        while len(parts[j]) < min_size:
            donor = int(np.argmax([len(p) for p in parts]))
            pick = int(rng.integers(len(parts[donor])))
            parts[j] = np.append(parts[j], parts[donor][pick])
            parts[donor] = np.delete(parts[donor], pick)
    return parts


def label_histograms(labels: np.ndarray, parts: list[np.ndarray], k: int) -> np.ndarray:
    """``[providers, classes]`` counts."""
    return np.stack([np.bincount(labels[p], minlength=k) for p in parts])


def label_skew(labels: np.ndarray, parts: list[np.ndarray], k: int) -> float:
    """Mean total-variation distance between provider and global label distributions."""
    hist = label_histograms(labels, parts, k).astype(float)
    local = hist / hist.sum(axis=1, keepdims=True)
    glob = np.bincount(labels, minlength=k) / len(labels)
    return float(0.5 * np.abs(local - glob).sum(axis=1).mean())
