import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError
from deai.learning.data import DatasetName, load_dataset
from deai.learning.partition import (
    PartitionConfig,
    PartitionName,
    label_histograms,
    label_skew,
    partition,
)

LABELS = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("name", list(PartitionName))
def test_partition_covers_every_example_once(name: PartitionName) -> None:
    parts = partition(LABELS, 20, PartitionConfig(name, alpha=0.5), seed=3)
    joined = np.concatenate(parts)
    assert len(parts) == 20
    assert sorted(joined.tolist()) == list(range(len(LABELS)))
    assert min(len(p) for p in parts) >= 2


@pytest.mark.parametrize("name", list(PartitionName))
def test_partition_is_seeded(name: PartitionName) -> None:
    a = partition(LABELS, 10, PartitionConfig(name), seed=1)
    b = partition(LABELS, 10, PartitionConfig(name), seed=1)
    c = partition(LABELS, 10, PartitionConfig(name), seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_are_equal_and_skew_is_low() -> None:
    parts = partition(LABELS, 10, PartitionConfig(PartitionName.IID), seed=0)
    assert {len(p) for p in parts} == {100}
    assert label_skew(LABELS, parts, 10) < 0.15


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    skew = [
        label_skew(
            LABELS, partition(LABELS, 20, PartitionConfig(PartitionName.DIRICHLET, a), 0), 10
        )
        for a in (100.0, 1.0, 0.1)
    ]
    assert skew[0] < 0.15 < skew[1] < skew[2]
    assert skew[2] > 0.6


def test_shards_give_few_classes_each() -> None:
    parts = partition(LABELS, 20, PartitionConfig(PartitionName.SHARDS, shards_per_provider=2), 0)
    hist = label_histograms(LABELS, parts, 10)
    assert ((hist > 0).sum(axis=1) <= 2).all()
    assert {len(p) for p in parts} == {50}


def test_quantity_skew_varies_sizes_not_labels() -> None:
    parts = partition(LABELS, 10, PartitionConfig(PartitionName.QUANTITY, alpha=0.3), 0)
    sizes = [len(p) for p in parts]
    assert max(sizes) > 3 * min(sizes)
    assert sum(sizes) == len(LABELS)


def test_too_many_providers_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot give"):
        partition(LABELS[:10], 20, PartitionConfig(), 0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), alpha=st.floats(0.05, 10), seed=st.integers(0, 2**16))
def test_dirichlet_property(n: int, alpha: float, seed: int) -> None:
    parts = partition(LABELS, n, PartitionConfig(PartitionName.DIRICHLET, alpha), seed)
    assert sum(len(p) for p in parts) == len(LABELS)
    assert len(np.unique(np.concatenate(parts))) == len(LABELS)


def test_test_split_is_held_out_and_stratified() -> None:
    s = load_dataset(DatasetName.DIGITS, seed=0, test_fraction=0.2, validation_fraction=0.1)
    assert len(s.train) + len(s.test) + len(s.validation) == 1797
    assert set(s.test.y.tolist()) == set(range(10))
    # no test image appears in training
    train = {tuple(r) for r in s.train.x.flatten(1).tolist()}
    overlap = sum(tuple(r) in train for r in s.test.x.flatten(1).tolist())
    assert overlap <= 5  # digits has a handful of exact duplicate images, nothing more
    syn = load_dataset(DatasetName.SYNTHETIC, seed=1, n_samples=400, n_classes=3)
    assert syn.train.num_classes == 3 and syn.train.input_shape == (20,)


def test_rare_class_has_one_holder_that_also_holds_the_rest_iid() -> None:
    parts = partition(LABELS, 7, PartitionConfig(PartitionName.RARE_CLASS), seed=0)
    hist = label_histograms(LABELS, parts, 10)
    assert hist[:-1, 9].sum() == 0 and hist[-1, 9] == 100  # only the last holds class 9
    assert hist[-1, :9].sum() > 0  # and an IID share of the others
    with pytest.raises(ConfigError, match="at least 2 providers"):
        partition(LABELS, 1, PartitionConfig(PartitionName.RARE_CLASS), seed=0)
