"""LoRA adapters through peft (Hu et al. 2021, "LoRA: Low-rank adaptation of large
language models").

A target linear layer with frozen weight ``W [out, in]`` computes ``W x + (alpha / r) B A x``
with ``A [r, in]`` (peft's Kaiming-uniform init, seeded here) and ``B [out, r]`` (zeros, so
the adapted model starts equal to the base). Only ``A`` and ``B`` train, so a provider in
federated fine-tuning sends ``r (in + out)`` numbers per target instead of ``in * out``.

What travels is one flat vector: :func:`lora_vector` concatenates
``peft.get_peft_model_state_dict`` in its key order, and :func:`load_lora_vector` splits a
vector the same way and hands it to ``peft.set_peft_model_state_dict``. That order is the
order of the trainable parameters in ``named_parameters``, so the vector is also what
:class:`deai.learning.params.FlatModel` trains (a test pins this).

Averaging adapters (FedAvg over ``A`` and ``B`` separately) is what federated LoRA does in
practice; ``mean(B) mean(A) != mean(B A)``, an approximation that vanishes as the adapters
stay close to their common starting point (one round of local steps from the same ``A``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import Tensor
from transformers import PreTrainedModel

from deai.errors import ConfigError

DEFAULT_TARGETS = ("q_proj", "v_proj")  # the LoRA paper's choice for attention


@dataclass(frozen=True)
class LoRASpec:
    rank: int = 4  # r
    alpha: int = 8  # scale alpha / r (peft takes an integer)
    targets: tuple[str, ...] = DEFAULT_TARGETS  # module names to adapt (peft target_modules)
    seed: int = 0  # seed of A's initialisation

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not self.targets:
            raise ConfigError(
                f"lora: need rank >= 1, alpha > 0 and a target, got {self.rank}, "
                f"{self.alpha}, {self.targets}"
            )


def apply_lora(model: PreTrainedModel, spec: LoRASpec) -> PeftModel:
    """Freeze ``model`` and add adapters to every target (in place, as peft does)."""
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(spec.targets),
        lora_dropout=0.0,  # deterministic local steps
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        try:
            peft_model = get_peft_model(model, config)
        except ValueError as e:  # peft: target modules not found
            raise ConfigError(f"lora: {e}") from None
    return peft_model


def _state(model: PeftModel) -> dict[str, Tensor]:
    state: dict[str, Tensor] = get_peft_model_state_dict(model)
    return state


def lora_shapes(model: PeftModel) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of every adapter tensor, in vector order."""
    return [(k, tuple(v.shape)) for k, v in _state(model).items()]


def lora_vector(model: PeftModel) -> Tensor:
    """All adapter weights as one flat float32 vector (what a provider sends)."""
    return torch.cat([v.detach().reshape(-1).float() for v in _state(model).values()])


def load_lora_vector(model: PeftModel, vector: Tensor) -> None:
    """Write a flat adapter vector (from :func:`lora_vector` order) into the adapters."""
    state = _state(model)
    sizes = [v.numel() for v in state.values()]
    if vector.dim() != 1 or vector.numel() != sum(sizes):
        raise ConfigError(f"lora: vector of shape {tuple(vector.shape)}, need ({sum(sizes)},)")
    parts = torch.split(vector.detach(), sizes)
    new = {
        k: p.view_as(v).to(v.dtype).clone() for (k, v), p in zip(state.items(), parts, strict=True)
    }
    result = set_peft_model_state_dict(model, new)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(f"lora: adapter keys not in the model: {unexpected[:3]}")
