"""Data-level attacks: label flipping, the pixel trigger, poisoning, model replacement."""

from __future__ import annotations

import pytest
import torch

from deai.attacks import (
    AttackName,
    AttackSpec,
    Corner,
    TriggerSpec,
    add_trigger,
    boost,
    data_attack,
    flip_labels,
    poison_dataset,
    replacement_factor,
)
from deai.errors import ConfigError


def test_flip_labels_is_an_involution_and_checks_range() -> None:
    y = torch.arange(10)
    assert flip_labels(y, 10).tolist() == list(range(9, -1, -1))
    assert torch.equal(flip_labels(flip_labels(y, 10), 10), y)
    with pytest.raises(ConfigError):
        flip_labels(torch.tensor([10]), 10)
    with pytest.raises(ConfigError):
        flip_labels(y, 1)


@pytest.mark.parametrize(
    ("corner", "rows", "cols"),
    [
        (Corner.BOTTOM_RIGHT, slice(6, 8), slice(6, 8)),
        (Corner.TOP_LEFT, slice(0, 2), slice(0, 2)),
        (Corner.TOP_RIGHT, slice(0, 2), slice(6, 8)),
        (Corner.BOTTOM_LEFT, slice(6, 8), slice(0, 2)),
    ],
)
def test_add_trigger_writes_only_the_patch(corner: Corner, rows: slice, cols: slice) -> None:
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    out = add_trigger(x, TriggerSpec(corner=corner))
    assert bool((out[..., rows, cols] == 1.0).all())
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[rows, cols] = False
    assert torch.equal(out[..., mask], x[..., mask])
    assert float(x.max()) <= 0.5  # the input is not modified


def test_add_trigger_on_flat_square_inputs() -> None:
    x = torch.zeros(3, 64)
    out = add_trigger(x, TriggerSpec(size=3, value=2.0))
    assert out.shape == (3, 64)
    assert torch.equal(out.reshape(3, 8, 8)[:, 5:, 5:], torch.full((3, 3, 3), 2.0))
    assert float(out.sum()) == 3 * 9 * 2.0
    with pytest.raises(ConfigError):
        add_trigger(torch.zeros(3, 10), TriggerSpec())
    with pytest.raises(ConfigError):
        add_trigger(torch.zeros(3, 1, 2, 2), TriggerSpec(size=3))


def test_poison_dataset_poisons_exactly_the_fraction_deterministically() -> None:
    x = torch.zeros(20, 1, 8, 8)
    y = torch.arange(20) % 10
    spec = TriggerSpec(target=7)
    x1, y1 = poison_dataset(x, y, spec, 0.25, torch.Generator().manual_seed(3))
    x2, y2 = poison_dataset(x, y, spec, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    poisoned = (x1.flatten(1).sum(dim=1) > 0).nonzero().flatten()
    assert len(poisoned) == 5 and bool((y1[poisoned] == 7).all())
    clean = torch.ones(20, dtype=torch.bool)
    clean[poisoned] = False
    assert torch.equal(y1[clean], y[clean]) and float(x.sum()) == 0.0
    with pytest.raises(ConfigError):
        poison_dataset(x, y, spec, 1.5, torch.Generator())


def test_model_replacement_boost() -> None:
    assert replacement_factor(20) == 20.0
    assert replacement_factor(20, 4, server_lr=0.5) == 10.0
    assert torch.equal(boost(torch.ones(3), 4.0), torch.full((3,), 4.0))
    with pytest.raises(ConfigError):
        replacement_factor(3, 4)
    with pytest.raises(ConfigError):
        boost(torch.ones(3), 0.0)


def test_data_attack_transforms() -> None:
    x = torch.zeros(10, 1, 8, 8)
    y = torch.arange(10)
    flip = data_attack(AttackSpec(AttackName.LABEL_FLIP, {"num_classes": 10}))
    assert flip is not None
    fx, fy = flip(x, y, torch.Generator())
    assert torch.equal(fx, x) and torch.equal(fy, 9 - y)
    poison = data_attack(AttackSpec(AttackName.BACKDOOR, {"target": 3, "fraction": 1.0}))
    assert poison is not None
    px, py = poison(x, y, torch.Generator().manual_seed(0))
    assert bool((py == 3).all()) and bool((px[..., 6:, 6:] == 1.0).all())
