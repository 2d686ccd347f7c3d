"""LoRA adapters (Hu et al. 2021, "LoRA: Low-rank adaptation of large language models").

A target ``nn.Linear`` with frozen weight ``W [out, in]`` becomes ``W x + (alpha/r) B A x``
with ``A [r, in]`` (small Gaussian) and ``B [out, r]`` (zeros, so the adapted model starts
equal to the base). Only ``A`` and ``B`` train, so a provider in federated fine-tuning
uploads ``r (in + out)`` numbers per target instead of ``in * out``. Averaging adapters
(FedAvg over ``A`` and ``B`` separately) is what federated LoRA does in practice; note
that ``mean(B) mean(A) != mean(B A)``, an accepted approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.errors import ConfigError

DEFAULT_TARGETS = ("q", "k", "v", "o", "fc", "proj")  # attention and MLP projections


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 4  # r
    alpha: float = 8.0  # scale alpha / r
    targets: tuple[str, ...] = DEFAULT_TARGETS  # names of the nn.Linear modules to adapt
    seed: int = 0  # seed of A's initialisation


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank correction."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, gen: torch.Generator) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scale = alpha / rank
        a = torch.randn(rank, base.in_features, generator=gen) / math.sqrt(base.in_features)
        self.lora_a = nn.Parameter(a)  # [r, in]
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))  # [out, r]

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * (x @ self.lora_a.T @ self.lora_b.T)  # [..., out]

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` equal to this module."""
        out = nn.Linear(self.base.in_features, self.base.out_features, self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> int:
    """Freeze ``model`` and wrap every target ``nn.Linear`` in place; return how many."""
    if cfg.rank < 1:
        raise ConfigError(f"lora: rank must be >= 1, got {cfg.rank}")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in cfg.targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, cfg.rank, cfg.alpha, gen))
                count += 1
    if count == 0:
        raise ConfigError(f"lora: no nn.Linear named any of {cfg.targets}")
    return count


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters, in module order (``A`` then ``B`` per target)."""
    params: list[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, LoRALinear):
            params.extend([m.lora_a, m.lora_b])
    return params


def lora_vector(model: nn.Module) -> Tensor:
    """All adapter weights as one flat vector (what a provider uploads)."""
    return parameters_to_vector(lora_parameters(model)).detach().clone()


def load_lora_vector(model: nn.Module, vector: Tensor) -> None:
    """Write a flat adapter vector back into the model's adapters."""
    params = lora_parameters(model)
    expected = sum(p.numel() for p in params)
    if vector.shape != (expected,):
        raise ConfigError(f"lora: adapter vector has shape {tuple(vector.shape)}, need {expected}")
    with torch.no_grad():
        vector_to_parameters(vector.clone(), params)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight (plain ``nn.Linear`` again); return how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
                count += 1
    return count
