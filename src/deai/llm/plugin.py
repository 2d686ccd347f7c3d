"""The LM plane's registry entries: the corpus as a dataset, Llama and SmolLM2 as models.

Factories follow :mod:`deai.registry`'s contracts: a dataset loader is
``loader(seed, **params) -> Dataset``; a model factory is
``factory(input_shape, num_classes, **params) -> nn.Module``.

``python_stdlib`` returns the *training* documents' windows only, with ``y`` the provider
shard each window's document belongs to (documents are assigned whole, see
:func:`deai.llm.corpus.split_documents`), and every shard cut to the same number of
windows, so the ``shards`` partition with one shard per provider gives each provider
exactly its own documents. The held-out validation and test documents never enter the
simulation: :func:`held_out` returns them for measuring perplexity on text no provider
has seen.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deai.learning.data import Dataset
from deai.llm.data import LMData, lm_data


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StdlibParams(_Params):
    providers: Annotated[int, Field(ge=1, le=256)] = 4  # document shards
    window: Annotated[int, Field(ge=8, le=2048)] = 64  # T: tokens of context per window
    windows_per_provider: Annotated[int, Field(ge=1)] | None = None  # None: all that fit
    vocab_size: Annotated[int, Field(ge=2, le=49_152)] | None = None  # None: SmolLM2's


_CACHE: dict[tuple[int, int, int, int | None], LMData] = {}


def _data(seed: int, p: StdlibParams) -> LMData:
    key = (seed, p.providers, p.window, p.vocab_size)
    if key not in _CACHE:
        _CACHE[key] = lm_data(p.providers, p.window, seed, p.vocab_size)
    return _CACHE[key]


def python_stdlib(
    seed: int = 0,
    providers: int = 4,
    window: int = 64,
    windows_per_provider: int | None = None,
    vocab_size: int | None = None,
) -> Dataset:
    """The Python standard library's sources, PII-scrubbed and deduplicated (causal LM)."""
    p = StdlibParams(
        providers=providers,
        window=window,
        windows_per_provider=windows_per_provider,
        vocab_size=vocab_size,
    )
    data = _data(seed, p)
    n = min(len(s) for s in data.providers)
    if p.windows_per_provider is not None:
        n = min(n, p.windows_per_provider)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for i, shard in enumerate(data.providers):  # a seeded sample of each shard's windows
        pick = torch.sort(torch.randperm(len(shard), generator=gen)[:n]).values
        xs.append(shard.x[pick])
        ys.append(torch.full((n,), i, dtype=torch.long))
    return Dataset(
        torch.cat(xs), torch.cat(ys), data.vocab_size, (window + 1,), f"{data.corpus.name}/train"
    )


def held_out(
    seed: int = 0, providers: int = 4, window: int = 64, vocab_size: int | None = None
) -> LMData:
    """The same split's held-out validation and test documents (and everything else)."""
    return _data(seed, StdlibParams(providers=providers, window=window, vocab_size=vocab_size))


class LlamaParams(_Params):
    hidden_size: Annotated[int, Field(ge=8, le=4096)] = 288
    layers: Annotated[int, Field(ge=1, le=64)] = 8
    heads: Annotated[int, Field(ge=1, le=64)] = 6
    kv_heads: Annotated[int, Field(ge=1, le=64)] = 2
    intermediate_size: Annotated[int, Field(ge=8, le=16_384)] = 768


def llama(input_shape: tuple[int, ...], num_classes: int, **size: int) -> nn.Module:
    """A Llama-architecture causal LM built from a config (random init)."""
    from deai.llm.models import llama as build

    return build(input_shape, num_classes, **LlamaParams(**size).model_dump())


class LoRAParams(_Params):
    rank: Annotated[int, Field(ge=1, le=256)] = 4
    alpha: Annotated[int, Field(ge=1, le=4096)] = 8
    targets: list[str] = Field(default=["q_proj", "v_proj"], min_length=1, max_length=16)


def smollm2_lora(
    input_shape: tuple[int, ...],
    num_classes: int,
    rank: int = 4,
    alpha: int = 8,
    targets: list[str] | None = None,
) -> nn.Module:
    """SmolLM2-135M-Instruct (local weights), frozen, with LoRA adapters that train."""
    from deai.llm.models import smollm2_lora as build

    p = LoRAParams(rank=rank, alpha=alpha, targets=targets or ["q_proj", "v_proj"])
    return build(input_shape, num_classes, p.rank, p.alpha, tuple(p.targets))
