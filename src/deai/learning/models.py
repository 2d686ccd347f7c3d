"""Small models that read top to bottom. Any ``torch.nn.Module`` works with the trainer;
these are the ones scenarios can name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor, nn

from deai.errors import ConfigError


class ModelName(StrEnum):
    MLP = "mlp"
    CNN = "cnn"
    LOGREG = "logreg"  # multinomial logistic regression: an MLP with no hidden layer


@dataclass(frozen=True)
class ModelConfig:
    name: ModelName = ModelName.MLP
    hidden: tuple[int, ...] = (64,)  # MLP hidden widths
    channels: tuple[int, int] = (8, 16)  # CNN conv widths


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # [B, *shape] -> [B, classes]


class SmallCNN(nn.Module):
    """Two 3x3 convolutions and a linear head; sized for 8x8 digits on a CPU."""

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, int], num_classes: int):
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"cnn needs image input (C, H, W), got shape {input_shape}")
        c, h, w = input_shape
        c1, c2 = channels
        self.conv1 = nn.Conv2d(c, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(c2 * (h // 2) * (w // 2), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))  # [B, c1, H, W]
        x = self.pool(torch.relu(self.conv2(x)))  # [B, c2, H/2, W/2]
        return self.head(x.flatten(1))  # [B, classes]


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> nn.Module:
    """Build a freshly initialised model; initialisation is seeded and leaves the global
    RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = math.prod(input_shape)
        if config.name is ModelName.MLP:
            return MLP(features, config.hidden, num_classes)
        if config.name is ModelName.LOGREG:
            return MLP(features, (), num_classes)
        return SmallCNN(input_shape, config.channels, num_classes)
