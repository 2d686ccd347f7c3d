"""Small models that read top to bottom, and the model factory contract.

Any ``torch.nn.Module`` works with the trainer. A job names its model through
:data:`deai.registry.models`, whose entries are factories::

    factory(input_shape: tuple[int, ...], num_classes: int, **params) -> nn.Module

Register your own with ``@deai.models.register("name", params=MyParams)``. Every party
builds the same initial model from the job's seed (:func:`build_model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from deai.errors import ConfigError

MAX_PARAMETERS = 50_000_000  # a classification model above this is a typo, not a job


class ModelName(StrEnum):
    """The built-in models (any other registered name works too)."""

    MLP = "mlp"
    CNN = "cnn"
    LOGREG = "logreg"  # multinomial logistic regression: an MLP with no hidden layer


@dataclass(frozen=True)
class ModelConfig:
    """A model by registry name and parameters (see :mod:`deai.registry`)."""

    name: str = ModelName.MLP.value
    params: dict[str, Any] = field(default_factory=dict)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Width = Annotated[int, Field(ge=1, le=16_384)]


class MLPParams(_Params):
    hidden: list[Width] = Field(default=[64], max_length=16)  # hidden layer widths


class CNNParams(_Params):
    channels: tuple[Width, Width] = (8, 16)  # the two conv layers' widths


class NoParams(_Params):
    pass


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


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: list[int] = [64]) -> nn.Module:  # noqa: B006
    """A multi-layer perceptron with ReLU hidden layers."""
    return MLP(math.prod(input_shape), tuple(hidden), num_classes)


def logreg(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression."""
    return MLP(math.prod(input_shape), (), num_classes)


def cnn(
    input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, int] = (8, 16)
) -> nn.Module:
    """Two 3x3 convolutions and a linear head, for image input (C, H, W) with H, W >= 2."""
    if len(input_shape) != 3 or min(input_shape[1:]) < 2:
        raise ConfigError(
            f"model cnn needs image input (C, H, W) with H, W >= 2; the data has shape "
            f"{tuple(input_shape)}: use mlp or logreg for tabular data"
        )
    return SmallCNN(input_shape, tuple(channels), num_classes)  # type: ignore[arg-type]


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> nn.Module:
    """A freshly initialised model from its registry factory. Initialisation is seeded and
    leaves the global RNG untouched."""
    from deai.registry import models

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = models.build(str(config.name), config.params, tuple(input_shape), num_classes)
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"model {config.name!r}: its factory returned {type(module).__name__}, "
            "not a torch.nn.Module"
        )
    return module


def count_parameters(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Trainable parameters of the model, counted on the meta device (nothing allocated),
    so an absurd size is refused before any memory is touched."""
    from deai.registry import models

    with torch.device("meta"):
        module = models.build(str(config.name), config.params, tuple(input_shape), num_classes)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_model_size(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, limit: int
) -> int:
    n = count_parameters(config, input_shape, num_classes)
    if n == 0:
        raise ConfigError(f"model {config.name!r} has no trainable parameters")
    if n > limit:
        raise ConfigError(
            f"model {config.name!r} with {config.params} has {n:,} parameters, above the "
            f"limit of {limit:,}: is a width mistyped?"
        )
    return n
