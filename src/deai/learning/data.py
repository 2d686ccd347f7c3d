"""Datasets behind one small abstraction.

A :class:`Dataset` is a pair of tensors plus what a model needs to know about them. Any
source becomes one: the built-in scikit-learn sets (digits, wine, breast_cancer, iris),
seeded synthetic data, NumPy arrays (:func:`from_arrays`), a torch ``Dataset``
(:func:`from_torch`), or a CSV / Parquet file with a named label column. Names a job can
use live in :data:`deai.registry.datasets`; a loader there is ``loader(seed, **params) ->
Dataset``.

The test split (and the requester's validation split) are held out *before*
partitioning (:func:`split`), so no provider ever trains on evaluation data. Loaders only
use data that ships with a package, that the project generates, or a local file: nothing
is downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from deai.errors import ConfigError

MAX_EXAMPLES = 2_000_000  # rows a loader may produce (a bound on memory, not a statistic)
MAX_VALUES = 200_000_000  # rows x features; float32: 800 MB


class DatasetName(StrEnum):
    """The built-in datasets (any other registered name works too)."""

    DIGITS = "digits"  # scikit-learn's 8x8 handwritten digits, 1797 images, 10 classes
    WINE = "wine"  # scikit-learn's wine recognition, 178 x 13 features, 3 classes
    BREAST_CANCER = "breast_cancer"  # scikit-learn's Wisconsin breast cancer, 569 x 30, 2
    IRIS = "iris"  # scikit-learn's iris, 150 x 4, 3 classes
    SYNTHETIC = "synthetic"  # seeded Gaussian clusters (sklearn make_classification)
    CSV = "csv"  # a local CSV file with a named label column
    PARQUET = "parquet"  # a local Parquet file with a named label column


@dataclass(frozen=True)
class Dataset:
    x: Tensor  # [N, *input_shape] float32
    y: Tensor  # [N] int64 class labels in [0, num_classes)
    num_classes: int
    input_shape: tuple[int, ...]  # shape of one example, e.g. (1, 8, 8) for digits
    name: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray | Tensor | Sequence[int]) -> Dataset:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.input_shape, self.name)

    def label_histogram(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()

    def to_bytes(self) -> bytes:
        """Canonical safetensors bytes (``x``, ``y`` and the class count ``k``, no
        metadata): what a requester ships to its validators, named by :meth:`digest`."""
        from safetensors.torch import save

        k = torch.tensor([self.num_classes], dtype=torch.int64)
        return save({"k": k, "x": self.x.contiguous(), "y": self.y.contiguous()})

    def digest(self) -> str:
        """sha256 of :meth:`to_bytes`: the name validators check the data by."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @staticmethod
    def from_bytes(data: bytes, name: str = "validation", max_bytes: int = 512 * 2**20) -> Dataset:
        """Parse :meth:`to_bytes` output from a peer (safetensors: never unpickles)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if len(data) > max_bytes:
            raise ConfigError(f"dataset blob of {len(data)} bytes exceeds {max_bytes}")
        try:
            tensors = load(data)
            x, y, k = tensors["x"], tensors["y"], tensors["k"]
            if k.shape != (1,) or x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError("expected k [1] int64, x float32, y int64")
        except (SafetensorError, KeyError, ValueError, RuntimeError) as e:
            raise ConfigError(f"dataset blob does not parse: {e}") from None
        return _checked(x, y, int(k[0]), name)


@dataclass(frozen=True)
class Splits:
    train: Dataset  # partitioned among providers
    validation: Dataset  # the requester's own data, given to validators
    test: Dataset  # held out for reporting only


# ------------------------------------------------------------------------ construction
def _checked(x: Any, y: Any, num_classes: int | None, name: str) -> Dataset:
    """A Dataset from arrays, with every mistake a ConfigError that says what is wrong."""
    xa = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
    ya = np.asarray(y.numpy() if isinstance(y, Tensor) else y)
    if xa.ndim < 2:
        raise ConfigError(f"{name}: x must have shape [N, features...], got {xa.shape}")
    if ya.ndim != 1 or ya.shape[0] != xa.shape[0]:
        raise ConfigError(f"{name}: y must have shape [{xa.shape[0]}], got {ya.shape}")
    if xa.shape[0] < 2:
        raise ConfigError(f"{name}: need at least 2 examples, got {xa.shape[0]}")
    if xa.shape[0] > MAX_EXAMPLES or xa.size > MAX_VALUES:
        raise ConfigError(
            f"{name}: {xa.shape[0]:,} examples x {xa.size // xa.shape[0]:,} values exceeds "
            f"the limit of {MAX_EXAMPLES:,} examples and {MAX_VALUES:,} values"
        )
    if not np.issubdtype(xa.dtype, np.number):
        raise ConfigError(f"{name}: x must be numeric, got dtype {xa.dtype}")
    xa = xa.astype(np.float32)
    if not np.isfinite(xa).all():
        raise ConfigError(f"{name}: x contains NaN or infinite values")
    if np.issubdtype(ya.dtype, np.floating):
        if not np.all(np.isfinite(ya)) or not np.all(ya == np.round(ya)):
            raise ConfigError(f"{name}: labels must be integers, got non-integer values")
    elif not np.issubdtype(ya.dtype, np.integer):
        raise ConfigError(f"{name}: labels must be integers; encode them first (see from_labels)")
    ya = ya.astype(np.int64)
    if ya.min() < 0:
        raise ConfigError(f"{name}: labels must be >= 0, got {int(ya.min())}")
    k = int(ya.max()) + 1 if num_classes is None else num_classes
    if k < 2:
        raise ConfigError(f"{name}: need at least 2 classes, got {k}")
    if int(ya.max()) >= k:
        raise ConfigError(f"{name}: label {int(ya.max())} is >= num_classes {k}")
    return Dataset(torch.from_numpy(xa), torch.from_numpy(ya), k, tuple(xa.shape[1:]), name)


def from_arrays(
    x: np.ndarray | Tensor | Sequence[Any],
    y: np.ndarray | Tensor | Sequence[Any],
    *,
    num_classes: int | None = None,
    name: str = "arrays",
) -> Dataset:
    """Any NumPy arrays (or tensors) ``x: [N, ...]`` and integer labels ``y: [N]``.
    String or other non-integer labels: encode them with :func:`from_labels`."""
    return _checked(x, y, num_classes, name)


def from_labels(x: np.ndarray | Tensor, labels: Sequence[Any], *, name: str = "arrays") -> Dataset:
    """Like :func:`from_arrays` for labels of any hashable kind: classes are numbered in
    sorted order of their string form, so every party numbers them the same way."""
    classes = sorted({str(v) for v in labels})
    index = {c: i for i, c in enumerate(classes)}
    return _checked(x, np.array([index[str(v)] for v in labels]), len(classes), name)


def from_torch(dataset: Any, *, num_classes: int | None = None, name: str = "torch") -> Dataset:
    """A map-style ``torch.utils.data.Dataset`` of ``(x, y)`` pairs, read once into memory."""
    try:
        n = len(dataset)
    except TypeError:
        raise ConfigError(f"{name}: a map-style torch Dataset with __len__ is required") from None
    if n > MAX_EXAMPLES:
        raise ConfigError(f"{name}: {n:,} examples exceeds the limit of {MAX_EXAMPLES:,}")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConfigError(f"{name}: item {i} is not an (x, y) pair")
        xs.append(torch.as_tensor(item[0], dtype=torch.float32))
        ys.append(int(torch.as_tensor(item[1]).item()))
    return _checked(torch.stack(xs), np.array(ys), num_classes, name)


# ---------------------------------------------------------------------------- built-ins
def _sklearn(loader: str, name: str, shape: tuple[int, ...] | None = None) -> Dataset:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    x = bunch.data.astype(np.float32)
    if shape is not None:
        x = x.reshape(-1, *shape)
    return _checked(x, bunch.target, None, name)


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), scaled to [0, 1]."""
    ds = _sklearn("load_digits", "digits", (1, 8, 8))
    return Dataset(ds.x / 16.0, ds.y, ds.num_classes, ds.input_shape, ds.name)


def _standardized(ds: Dataset) -> Dataset:
    """Features scaled to zero mean and unit variance (population statistics of a public,
    fixed dataset, so every party computes the same transform)."""
    mean, std = ds.x.mean(dim=0), ds.x.std(dim=0).clamp_min(1e-6)
    return Dataset((ds.x - mean) / std, ds.y, ds.num_classes, ds.input_shape, ds.name)


def wine(seed: int = 0) -> Dataset:
    """scikit-learn's wine recognition data (178 x 13, 3 classes), standardized."""
    return _standardized(_sklearn("load_wine", "wine"))


def breast_cancer(seed: int = 0) -> Dataset:
    """scikit-learn's Wisconsin breast cancer data (569 x 30, 2 classes), standardized."""
    return _standardized(_sklearn("load_breast_cancer", "breast_cancer"))


def iris(seed: int = 0) -> Dataset:
    """scikit-learn's iris (150 x 4, 3 classes), standardized."""
    return _standardized(_sklearn("load_iris", "iris"))


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SyntheticParams(_Params):
    n_samples: Annotated[int, Field(ge=40, le=1_000_000)] = 2000
    n_features: Annotated[int, Field(ge=2, le=10_000)] = 20
    n_classes: Annotated[int, Field(ge=2, le=100)] = 4


def synthetic(
    seed: int = 0, n_samples: int = 2000, n_features: int = 20, n_classes: int = 4
) -> Dataset:
    """Seeded Gaussian clusters (scikit-learn ``make_classification``, class_sep 1.5)."""
    from sklearn.datasets import make_classification

    if n_samples < 10 * n_classes:
        raise ConfigError(f"synthetic: n_samples must be >= 10 * n_classes, got {n_samples}")
    if n_samples * n_features > MAX_VALUES:
        raise ConfigError(
            f"synthetic: n_samples x n_features = {n_samples * n_features:,} exceeds {MAX_VALUES:,}"
        )
    informative = max(2, min(n_features, n_features // 2 + 1))
    if n_classes > 2**informative:
        raise ConfigError(
            f"synthetic: {n_classes} classes need more informative features than "
            f"{n_features} features give; raise n_features"
        )
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed % 2**32,
    )
    return _checked(x, y, n_classes, "synthetic")


class FileParams(_Params):
    path: str  # a local file
    label: str  # the label column's name
    features: list[str] | None = None  # feature columns; None: every other column


def _table_dataset(
    columns: dict[str, list[Any]], path: str, label: str, features: list[str] | None
) -> Dataset:
    if label not in columns:
        raise ConfigError(f"{path}: no label column {label!r}; columns: {', '.join(columns)}")
    names = features if features is not None else [c for c in columns if c != label]
    missing = [c for c in names if c not in columns]
    if missing:
        raise ConfigError(f"{path}: no column(s) {missing}; columns: {', '.join(columns)}")
    if not names:
        raise ConfigError(f"{path}: no feature columns besides {label!r}")
    try:
        x = np.array([[float(v) for v in columns[c]] for c in names], dtype=np.float32).T
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: feature columns must be numeric: {e}") from None
    labels = columns[label]
    try:
        ints = [int(v) for v in labels]
        if all(str(i) == str(v).strip() for i, v in zip(ints, labels, strict=True)):
            return _standardized(_checked(x, np.array(ints), None, Path(path).name))
    except (TypeError, ValueError):
        pass
    return _standardized(from_labels(x, labels, name=Path(path).name))


def _read(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{path}: no such file")
    return p


def csv_file(seed: int = 0, *, path: str, label: str, features: list[str] | None = None) -> Dataset:
    """A CSV file with a header row; ``label`` names the label column (integers or any
    strings); features must be numeric. Features are standardized."""
    p = _read(path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: not a readable UTF-8 CSV file: {e}") from None
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    if len(rows) > MAX_EXAMPLES:
        raise ConfigError(f"{path}: {len(rows):,} rows exceeds {MAX_EXAMPLES:,}")
    columns = {c: [r[c] for r in rows] for c in rows[0] if c is not None}
    return _table_dataset(columns, path, label, features)


def parquet_file(
    seed: int = 0, *, path: str, label: str, features: list[str] | None = None
) -> Dataset:
    """A Parquet file; ``label`` names the label column. Features are standardized."""
    p = _read(path)
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(p)
    except ImportError:
        raise ConfigError("parquet: install pyarrow (pip install pyarrow)") from None
    except Exception as e:  # pyarrow raises its own ArrowInvalid for a non-Parquet file
        raise ConfigError(f"{path}: not a readable Parquet file: {e}") from None
    if table.num_rows > MAX_EXAMPLES:
        raise ConfigError(f"{path}: {table.num_rows:,} rows exceeds {MAX_EXAMPLES:,}")
    return _table_dataset(table.to_pydict(), path, label, features)


# ------------------------------------------------------------------------------ splits
def split(
    full: Dataset, seed: int = 0, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> Splits:
    """Hold out stratified test and validation splits, seeded: every class keeps its share
    in each split (a class too small for a split keeps all its examples in training)."""
    if not 0.0 < test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(
            f"test_fraction must be in (0, 1) and validation_fraction in [0, 1); got "
            f"{test_fraction}, {validation_fraction}"
        )
    if test_fraction + validation_fraction >= 0.9:
        raise ConfigError("test_fraction + validation_fraction must leave >= 10% for training")
    y = full.y.numpy()
    rng = np.random.default_rng(seed)
    test_idx, val_idx, train_idx = [], [], []
    for c in range(full.num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * validation_fraction)
        test_idx.append(idx[:n_test])
        val_idx.append(idx[n_test : n_test + n_val])
        train_idx.append(idx[n_test + n_val :])
    test = np.sort(np.concatenate(test_idx)).astype(np.int64)
    if len(test) == 0:
        raise ConfigError(f"{full.name}: too few examples for a test split")
    return Splits(
        train=full.subset(rng.permutation(np.concatenate(train_idx)).astype(np.int64)),
        validation=full.subset(np.sort(np.concatenate(val_idx)).astype(np.int64)),
        test=full.subset(test),
    )


def load(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Dataset:
    """The full dataset ``name`` from :data:`deai.registry.datasets`."""
    from deai.registry import datasets

    ds = datasets.build(str(name), params or {}, seed)
    if not isinstance(ds, Dataset):
        raise ConfigError(
            f"dataset {name!r}: its loader returned {type(ds).__name__}, not deai.Dataset "
            "(wrap arrays with deai.learning.data.from_arrays)"
        )
    return ds


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    **params: Any,
) -> Splits:
    """Load a registered dataset and hold out stratified test and validation splits."""
    return split(load(str(name), params, seed), seed, test_fraction, validation_fraction)


def num_values(ds: Dataset) -> int:
    return len(ds) * math.prod(ds.input_shape)
