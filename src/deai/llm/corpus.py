"""A real text corpus that ships with the machine: the Python standard library's sources.

Every ``.py`` file of the running interpreter's standard library (tests, ``site-packages``
and caches left out) is one document: 734 modules, about 12 MB for CPython 3.11.7, in
English prose (docstrings, comments) and code. It is real text, written by hundreds of
people over thirty years, with what real text has: authors' e-mail addresses and other
PII in headers, and near-duplicate documents (the ``encodings.cp*`` code pages).

Cleaning goes through deai's own preprocessing (:mod:`deai.privacy.text`): every document
is PII-scrubbed with :func:`~deai.privacy.text.scrub_text`, then near-duplicates of an
earlier kept document are dropped with :func:`~deai.privacy.text.near_duplicates` (MinHash
LSH). Cleaning takes tens of seconds, so the cleaned corpus is cached (as JSON lines, in
:func:`deai.llm.pretrained.cache_root`) under a stamp of the interpreter version and the
source files' sizes; the cache is never committed.

Splitting is by document, never by window: a seeded permutation picks the held-out
validation and test documents first, then the rest go to providers, each next-largest
document to the provider holding the fewest characters, so shards are balanced and no
document (nor any window of one) is in two places. Token windows of ``T + 1`` ids (a
window and its next token) are cut from each split's documents, joined by an end-of-text
token, with stride ``T``, so every token is a target once.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.learning.data import Dataset
from deai.llm.pretrained import cache_root
from deai.privacy.text import near_duplicates, scrub_text

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
DEDUP_THRESHOLD = 0.8  # estimated Jaccard similarity of 5-gram shingles that drops a doc


@dataclass(frozen=True)
class Document:
    name: str  # path relative to the standard library's folder
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str  # e.g. "python-3.11.7-stdlib"
    documents: tuple[Document, ...]  # cleaned, in path order
    documents_in: int  # before deduplication
    pii_replaced: dict[str, int]  # replacements per PII kind
    sha256: str  # of the cleaned documents (names and texts)

    @property
    def chars(self) -> int:
        return sum(len(d.text) for d in self.documents)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "documents": len(self.documents),
            "documents_before_dedup": self.documents_in,
            "duplicates_removed": self.documents_in - len(self.documents),
            "chars": self.chars,
            "pii_replaced": self.pii_replaced,
            "sha256": self.sha256,
        }


def stdlib_files() -> tuple[Path, list[Path]]:
    """The standard library's folder and its source files, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS and not p.name.startswith("test_")
    )
    if not files:
        raise ConfigError(f"corpus: no Python sources under {root}")
    return root, files


def _digest(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.name.encode() + b"\0" + d.text.encode() + b"\0")
    return h.hexdigest()


def clean(name: str, raw: Sequence[Document]) -> Corpus:
    """PII-scrub every document, then drop near-duplicates (deai.privacy.text)."""
    scrubbed: list[Document] = []
    counts: dict[str, int] = {}
    for d in raw:
        text, c = scrub_text(d.text)
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
        scrubbed.append(Document(d.name, text))
    drop = set(near_duplicates([d.text for d in scrubbed], DEDUP_THRESHOLD))
    kept = tuple(d for i, d in enumerate(scrubbed) if i not in drop)
    return Corpus(name, kept, len(raw), dict(sorted(counts.items())), _digest(kept))


def stdlib_corpus(cache: bool = True) -> Corpus:
    """The cleaned standard-library corpus (cached after the first call)."""
    root, files = stdlib_files()
    version = ".".join(map(str, sys.version_info[:3]))
    name = f"python-{version}-stdlib"
    stamp = hashlib.sha256(
        json.dumps([[str(p.relative_to(root)), p.stat().st_size] for p in files]).encode()
    ).hexdigest()[:16]
    path = cache_root() / "corpus" / f"{name}-{stamp}.jsonl"
    if cache and path.is_file():
        return _read(path, name)
    raw = [
        Document(str(p.relative_to(root)), p.read_text(encoding="utf-8", errors="replace"))
        for p in files
    ]
    corpus = clean(name, raw)
    if cache:
        _write(path, corpus)
    return corpus


def _write(path: Path, corpus: Corpus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    head = {"documents_in": corpus.documents_in, "pii": corpus.pii_replaced}
    lines = [json.dumps(head)] + [
        json.dumps({"name": d.name, "text": d.text}) for d in corpus.documents
    ]
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.rename(path)


def _read(path: Path, name: str) -> Corpus:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    docs = tuple(Document(r["name"], r["text"]) for r in map(json.loads, lines[1:]))
    return Corpus(name, docs, int(head["documents_in"]), dict(head["pii"]), _digest(docs))


@dataclass(frozen=True)
class CorpusSplit:
    providers: tuple[tuple[Document, ...], ...]  # one shard of whole documents each
    validation: tuple[Document, ...]  # the requester's held-out documents
    test: tuple[Document, ...]  # held out for reporting only


def split_documents(
    corpus: Corpus,
    providers: int,
    seed: int = 0,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> CorpusSplit:
    """Split by document: held-out sets first, then balanced provider shards."""
    n = len(corpus.documents)
    n_val = max(1, round(validation_fraction * n))
    n_test = max(1, round(test_fraction * n))
    if providers < 1 or n_val + n_test + providers > n:
        raise ConfigError(f"corpus: {n} documents cannot give {providers} shards and hold-outs")
    order = np.random.default_rng(seed).permutation(n).tolist()
    docs = corpus.documents
    val = tuple(docs[i] for i in sorted(order[:n_val]))
    test = tuple(docs[i] for i in sorted(order[n_val : n_val + n_test]))
    rest = sorted(order[n_val + n_test :], key=lambda i: (-len(docs[i].text), i))
    shards: list[list[int]] = [[] for _ in range(providers)]
    load = [0] * providers
    for i in rest:  # largest first onto the lightest shard: balanced and deterministic
        j = min(range(providers), key=lambda k: (load[k], k))
        shards[j].append(i)
        load[j] += len(docs[i].text)
    return CorpusSplit(tuple(tuple(docs[i] for i in sorted(s)) for s in shards), val, test)


Tokenize = Callable[[list[str]], list[list[int]]]


def windows(token_ids: Sequence[Sequence[int]], length: int, eos: int) -> Tensor:
    """``[N, length + 1]`` windows of the documents joined by ``eos``, stride ``length``."""
    if length < 1:
        raise ConfigError(f"corpus: window length must be >= 1, got {length}")
    stream = np.fromiter((t for ids in token_ids for t in (*ids, eos)), dtype=np.int64)  # [total]
    n = (len(stream) - 1) // length
    if n < 1:
        raise ConfigError(f"corpus: {len(stream)} tokens do not fill one window of {length}")
    idx = np.arange(n)[:, None] * length + np.arange(length + 1)  # [N, length + 1]
    return torch.from_numpy(stream[idx])


@dataclass(frozen=True)
class VocabMap:
    """Keep the ``size - 1`` most frequent token ids (ranked by count, ties by id) and map
    every other id to one unknown id, ``size - 1``. Counted on training shards only."""

    lookup: Tensor  # [old_vocab] old id -> new id

    @property
    def size(self) -> int:
        return int(self.lookup.max()) + 1

    @staticmethod
    def from_windows(train: Sequence[Tensor], old_vocab: int, size: int) -> VocabMap:
        if not 2 <= size <= old_vocab:
            raise ConfigError(f"vocab: size must be in [2, {old_vocab}], got {size}")
        counts = torch.zeros(old_vocab, dtype=torch.long)
        for w in train:
            counts += torch.bincount(w.reshape(-1), minlength=old_vocab)
        order = np.lexsort((np.arange(old_vocab), -counts.numpy()))  # by count, then id
        lookup = torch.full((old_vocab,), size - 1, dtype=torch.long)
        lookup[torch.from_numpy(order[: size - 1])] = torch.arange(size - 1)
        return VocabMap(lookup)

    def __call__(self, ids: Tensor) -> Tensor:
        return self.lookup[ids]


def window_dataset(w: Tensor, vocab_size: int, name: str) -> Dataset:
    """Token windows as a :class:`Dataset`: ``x [N, T + 1]`` (ids, float32: exact below
    2^24), ``y`` zeros (a causal LM reads its targets from ``x``), ``num_classes`` the
    vocabulary."""
    if vocab_size >= 2**24:
        raise ConfigError("corpus: token ids above 2^24 are not exact in float32")
    return Dataset(
        w.float(), torch.zeros(len(w), dtype=torch.long), vocab_size, (w.shape[1],), name
    )
