"""A small language model for communication-efficiency experiments: byte tokenizer,
generated corpus, nanoGPT-like model, LoRA adapters and DiLoCo's outer optimizer."""

from deai.learning.lm.corpus import Domain, generate
from deai.learning.lm.diloco import OuterNesterov, nesterov_step, pseudo_gradient
from deai.learning.lm.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_lora_vector,
    lora_parameters,
    lora_vector,
    merge_lora,
)
from deai.learning.lm.model import GPT, GPTConfig, batches, evaluate

__all__ = [
    "GPT",
    "Domain",
    "GPTConfig",
    "LoRAConfig",
    "LoRALinear",
    "OuterNesterov",
    "apply_lora",
    "batches",
    "evaluate",
    "generate",
    "load_lora_vector",
    "lora_parameters",
    "lora_vector",
    "merge_lora",
    "nesterov_step",
    "pseudo_gradient",
]
