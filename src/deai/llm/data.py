"""The standard-library corpus as causal-LM datasets: tokenized, split, windowed.

Tokenization uses SmolLM2's tokenizer (a 49,152-token BPE that ships with the model), so
the pretrained model and models trained from scratch read the same ids. Tokenizing the
whole corpus takes seconds; the ids are cached beside the cleaned corpus (safetensors,
keyed by the corpus hash). A model trained from scratch may use a smaller vocabulary:
:class:`~deai.llm.corpus.VocabMap` keeps the most frequent ids of the *training* shards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from deai.learning.data import Dataset
from deai.llm.corpus import (
    Corpus,
    Document,
    VocabMap,
    split_documents,
    stdlib_corpus,
    window_dataset,
    windows,
)
from deai.llm.pretrained import cache_root


def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    from deai.llm.pretrained import smollm2_dir

    tok: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
        smollm2_dir(), local_files_only=True
    )
    return tok


def tokenize_corpus(corpus: Corpus, tokenizer: PreTrainedTokenizerBase) -> dict[str, Tensor]:
    """Token ids of every document, by document name (cached)."""
    key = hashlib.sha256(f"{corpus.sha256}/{tokenizer.name_or_path}/{len(tokenizer)}".encode())
    path = cache_root() / "corpus" / f"{corpus.name}-tokens-{key.hexdigest()[:16]}.safetensors"
    if path.is_file():
        return load_file(path)
    ids = tokenizer([d.text for d in corpus.documents], add_special_tokens=False)["input_ids"]
    out = {
        d.name: torch.tensor(i, dtype=torch.long)
        for d, i in zip(corpus.documents, ids, strict=True)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(out, str(tmp))
    tmp.rename(path)
    return out


@dataclass(frozen=True)
class LMData:
    providers: tuple[Dataset, ...]  # one shard of whole documents each
    validation: Dataset  # the requester's held-out documents
    test: Dataset  # held out for reporting
    vocab_size: int
    window: int  # T: a window holds T + 1 ids
    corpus: Corpus
    vocab_map: VocabMap | None  # None: the tokenizer's full vocabulary

    def describe(self) -> dict[str, object]:
        return {
            **self.corpus.describe(),
            "tokenizer": "SmolLM2-135M BPE",
            "vocab_size": self.vocab_size,
            "window": self.window,
            "train_tokens": sum(len(d) * self.window for d in self.providers),
            "validation_tokens": len(self.validation) * self.window,
            "test_tokens": len(self.test) * self.window,
        }


def lm_data(
    providers: int,
    window: int,
    seed: int = 0,
    vocab_size: int | None = None,
    corpus: Corpus | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LMData:
    """The corpus split by document into ``providers`` shards plus validation and test."""
    corpus = corpus or stdlib_corpus()
    tok = tokenizer or smollm2_tokenizer()
    eos = int(tok.eos_token_id) if tok.eos_token_id is not None else 0
    ids = tokenize_corpus(corpus, tok)
    split = split_documents(corpus, providers, seed)

    def cut(docs: tuple[Document, ...]) -> Tensor:
        return windows([ids[d.name].tolist() for d in docs], window, eos)

    shards = [cut(s) for s in split.providers]
    val, test = cut(split.validation), cut(split.test)
    vmap = None
    vocab = len(tok)
    if vocab_size is not None and vocab_size < vocab:
        vmap = VocabMap.from_windows(shards, vocab, vocab_size)
        shards, val, test = [vmap(s) for s in shards], vmap(val), vmap(test)
        vocab = vocab_size
    name = corpus.name
    return LMData(
        tuple(window_dataset(s, vocab, f"{name}/provider{i}") for i, s in enumerate(shards)),
        window_dataset(val, vocab, f"{name}/validation"),
        window_dataset(test, vocab, f"{name}/test"),
        vocab,
        window,
        corpus,
        vmap,
    )
