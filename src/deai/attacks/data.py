"""Data-level attacks: the attacker poisons its own training data and then trains honestly.

Threat model: a malicious data provider controls only its local dataset (and, for the
model-replacement backdoor, the scale of the update it sends). It knows the task, the
label set and, for model replacement, roughly how many rows the round averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor

from deai.errors import ConfigError


def flip_labels(y: Tensor, num_classes: int) -> Tensor:
    """Label flipping: ``y -> num_classes - 1 - y`` (Fang, Cao, Jia, Gong, USENIX Security 2020;
    Tolpegin et al., ESORICS 2020). The attacker knows only the label set."""
    if num_classes < 2:
        raise ConfigError(f"label flipping needs num_classes >= 2, got {num_classes}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(
            f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]"
        )
    return (num_classes - 1) - y


class Corner(StrEnum):
    TOP_LEFT = "top_left"
    TOP_RIGHT = "top_right"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_RIGHT = "bottom_right"


@dataclass(frozen=True)
class TriggerSpec:
    """A square pixel trigger stamped on images (Gu et al. 2017's BadNets pattern, as used
    by Bagdasaryan et al. 2020 for federated backdoors)."""

    target: int = 0  # label every triggered example is relabelled to
    size: int = 2  # side of the square patch, in pixels
    value: float = 1.0  # pixel value written (digits are scaled to [0, 1])
    corner: Corner = Corner.BOTTOM_RIGHT  # where the patch sits

    def __post_init__(self) -> None:
        if self.size < 1 or self.target < 0:
            raise ConfigError(
                f"trigger needs size >= 1 and target >= 0; got {self.size}, {self.target}"
            )


def add_trigger(x: Tensor, spec: TriggerSpec) -> Tensor:
    """A copy of images ``x[..., H, W]`` with the trigger patch written into the last two
    dims (every channel). A flat ``x[N, H*W]`` with square images is reshaped and back."""
    flat = x.ndim == 2
    if flat:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ConfigError(f"flat inputs need square images, got {x.shape[1]} features")
        img = x.reshape(x.shape[0], side, side).clone()  # [N, H, W]
    else:
        img = x.clone()  # [..., H, W]
    h, w = img.shape[-2], img.shape[-1]
    if spec.size > min(h, w):
        raise ConfigError(f"trigger size {spec.size} exceeds image {h}x{w}")
    rows = (
        slice(0, spec.size)
        if spec.corner in (Corner.TOP_LEFT, Corner.TOP_RIGHT)
        else slice(h - spec.size, h)
    )
    cols = (
        slice(0, spec.size)
        if spec.corner in (Corner.TOP_LEFT, Corner.BOTTOM_LEFT)
        else slice(w - spec.size, w)
    )
    img[..., rows, cols] = spec.value
    return img.reshape(x.shape) if flat else img


def poison_dataset(
    x: Tensor, y: Tensor, spec: TriggerSpec, fraction: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Backdoor data poisoning (Bagdasaryan, Veit, Hua, Estrin, Shmatikov, AISTATS 2020):
    ``floor(fraction N)`` examples, drawn with ``gen``, get the trigger and label
    ``spec.target``; the rest stay clean so the main task keeps its accuracy. Returns copies."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"poison fraction must be in [0, 1], got {fraction}")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(
            f"x and y disagree on the number of examples: {x.shape[0]} vs {y.shape[0]}"
        )
    k = int(fraction * x.shape[0])
    idx = torch.randperm(x.shape[0], generator=gen)[:k]
    x2, y2 = x.clone(), y.clone()
    if k:
        x2[idx] = add_trigger(x[idx], spec)
        y2[idx] = spec.target
    return x2, y2


def replacement_factor(n_total: int, n_malicious: int = 1, server_lr: float = 1.0) -> float:
    """Model replacement's boost ``gamma = n / eta`` (Bagdasaryan et al. 2020, Sec. 4), split
    among ``n_malicious`` colluding attackers. The attacker knows ``n`` and the server rate."""
    if n_total < 1 or n_malicious < 1 or n_malicious > n_total or server_lr <= 0.0:
        raise ConfigError(
            f"need 1 <= n_malicious <= n_total and server_lr > 0; "
            f"got {n_total=}, {n_malicious=}, {server_lr=}"
        )
    return n_total / (server_lr * n_malicious)


def boost(update: Tensor, factor: float) -> Tensor:
    """Model replacement: send ``factor`` times the backdoored update so that averaging with
    the honest rows leaves (roughly) the backdoored model (Bagdasaryan et al. 2020)."""
    if not factor > 0.0:
        raise ConfigError(f"boost factor must be > 0, got {factor}")
    return update * factor
