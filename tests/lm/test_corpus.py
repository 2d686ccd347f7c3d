"""The standard-library corpus: cleaned by deai.privacy.text, split by document, windowed."""

from __future__ import annotations

import re

import pytest
import torch

from deai.errors import ConfigError
from deai.llm.corpus import (
    Corpus,
    Document,
    VocabMap,
    clean,
    split_documents,
    stdlib_files,
    window_dataset,
    windows,
)


def _real(names: tuple[str, ...]) -> list[Document]:
    root, files = stdlib_files()
    by_name = {str(p.relative_to(root)): p for p in files}
    return [Document(n, by_name[n].read_text(encoding="utf-8")) for n in names]


def test_stdlib_sources_are_found_without_tests() -> None:
    root, files = stdlib_files()
    names = {str(p.relative_to(root)) for p in files}
    assert "smtplib.py" in names and "json/decoder.py" in names and len(files) > 400
    assert not any(n.startswith("test/") or "/tests/" in n or "site-packages" in n for n in names)


def test_cleaning_scrubs_real_addresses_and_drops_code_page_duplicates() -> None:
    raw = _real(
        (
            "smtplib.py",
            "imaplib.py",
            "encodings/cp1250.py",
            "encodings/cp1251.py",
            "encodings/cp1252.py",
        )
    )
    email = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
    assert any(email.search(d.text) for d in raw)  # the attack surface is real
    corpus = clean("sample", raw)
    assert corpus.pii_replaced.get("EMAIL", 0) >= 1
    assert not any(email.search(d.text) for d in corpus.documents)
    names = [d.name for d in corpus.documents]
    assert names[:3] == ["smtplib.py", "imaplib.py", "encodings/cp1250.py"]
    assert len(names) < 5 and corpus.documents_in == 5  # near-identical code pages go
    assert clean("sample", raw).sha256 == corpus.sha256


def _toy_corpus(n: int) -> Corpus:
    docs = tuple(Document(f"d{i}.py", "x" * (10 + 7 * i)) for i in range(n))
    return Corpus("toy", docs, n, {}, "0" * 64)


def test_split_is_by_document_disjoint_balanced_and_seeded() -> None:
    corpus = _toy_corpus(60)
    s = split_documents(corpus, providers=4, seed=1)
    groups = [*s.providers, s.validation, s.test]
    names = [d.name for g in groups for d in g]
    assert sorted(names) == sorted(d.name for d in corpus.documents)  # each exactly once
    assert len(s.validation) == len(s.test) == 3
    sizes = [sum(len(d.text) for d in p) for p in s.providers]
    assert max(sizes) - min(sizes) <= max(len(d.text) for d in corpus.documents)
    assert split_documents(corpus, 4, seed=1) == s and split_documents(corpus, 4, seed=2) != s
    with pytest.raises(ConfigError):
        split_documents(_toy_corpus(5), providers=4)


def test_windows_stride_by_length_and_join_with_eos() -> None:
    w = windows([[1, 2, 3], [4, 5]], length=3, eos=0)  # stream 1 2 3 0 4 5 0
    assert w.tolist() == [[1, 2, 3, 0], [0, 4, 5, 0]]
    assert torch.equal(w[:-1, -1], w[1:, 0])  # every token is a target once
    with pytest.raises(ConfigError):
        windows([[1]], length=5, eos=0)
    data = window_dataset(w, vocab_size=6, name="t")
    assert data.x.dtype == torch.float32 and data.input_shape == (4,) and data.num_classes == 6


def test_vocab_map_keeps_frequent_ids_and_maps_the_rest_to_unknown() -> None:
    train = [torch.tensor([[5, 5, 5, 2, 2, 9]])]
    vm = VocabMap.from_windows(train, old_vocab=10, size=3)
    assert vm.size == 3
    assert vm(torch.tensor([5, 2, 9, 0])).tolist() == [0, 1, 2, 2]  # 9 and 0 are unknown
    with pytest.raises(ConfigError):
        VocabMap.from_windows(train, 10, 11)
