"""Datasets behind one small abstraction.

A :class:`Dataset` is a pair of tensors plus what a model needs to know about them. The
test split (and the requester's validation split) are held out *before* partitioning, so
no provider ever trains on evaluation data. Loaders only use data that ships with a package
or that the project generates: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError


class DatasetName(StrEnum):
    DIGITS = "digits"  # scikit-learn's 8x8 handwritten digits, 1797 images, 10 classes
    SYNTHETIC = "synthetic"  # seeded Gaussian-cluster classification (sklearn make_classification)


@dataclass(frozen=True)
class Dataset:
    x: Tensor  # [N, *input_shape] float32
    y: Tensor  # [N] int64 class labels
    num_classes: int
    input_shape: tuple[int, ...]  # shape of one example, e.g. (1, 8, 8) for digits
    name: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray | Tensor) -> Dataset:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.input_shape, self.name)

    def label_histogram(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()


@dataclass(frozen=True)
class Splits:
    train: Dataset  # partitioned among providers
    validation: Dataset  # the requester's own data, given to validators
    test: Dataset  # held out for reporting only


def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, ...], int]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64), (1, 8, 8), 10


def _synthetic(
    seed: int, n_samples: int, n_features: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], int]:
    from sklearn.datasets import make_classification

    if n_classes < 2 or n_features < 2 or n_samples < 10 * n_classes:
        raise ConfigError(
            f"synthetic dataset needs n_classes >= 2, n_features >= 2 and n_samples >= "
            f"10 * n_classes; got {n_samples=}, {n_features=}, {n_classes=}"
        )
    informative = max(2, min(n_features, n_features // 2 + 1))
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    return x.astype(np.float32), y.astype(np.int64), (n_features,), n_classes


def load_dataset(
    name: DatasetName,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
) -> Splits:
    """Load a dataset and hold out stratified test and validation splits, seeded."""
    if not 0.0 < test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(
            f"test_fraction must be in (0, 1) and validation_fraction in [0, 1); got "
            f"{test_fraction}, {validation_fraction}"
        )
    if test_fraction + validation_fraction >= 0.9:
        raise ConfigError("test_fraction + validation_fraction must leave >= 10% for training")
    if name is DatasetName.DIGITS:
        x, y, shape, k = _digits()
    else:
        x, y, shape, k = _synthetic(seed, n_samples, n_features, n_classes)
    rng = np.random.default_rng(seed)
    test_idx, val_idx, train_idx = [], [], []
    for c in range(k):  # stratified: every class keeps its share in each split
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * validation_fraction)
        test_idx.append(idx[:n_test])
        val_idx.append(idx[n_test : n_test + n_val])
        train_idx.append(idx[n_test + n_val :])
    full = Dataset(torch.from_numpy(x), torch.from_numpy(y), k, shape, str(name))
    return Splits(
        train=full.subset(rng.permutation(np.concatenate(train_idx))),
        validation=full.subset(np.sort(np.concatenate(val_idx))),
        test=full.subset(np.sort(np.concatenate(test_idx))),
    )
