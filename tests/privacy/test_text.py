"""PII scrubbing, near-duplicate removal and the ``deai data scrub`` command."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deai.errors import ConfigError
from deai.privacy.cli import app
from deai.privacy.pii_eval import evaluate_corpus, load_corpus
from deai.privacy.text import (
    CustomPattern,
    PiiKind,
    ScrubConfig,
    find_pii,
    find_pii_regex,
    iban_valid,
    load_patterns,
    luhn_valid,
    near_duplicates,
    scrub_documents,
    scrub_text,
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+ml@example.co.uk today", "EMAIL"),
        ("call +44 20 7946 0958 now", "PHONE"),
        ("call (555) 123-4567", "PHONE"),
        ("host 10.0.255.1 is up", "IPV4"),
        ("host 2001:db8::8a2e:370:7334 is up", "IPV6"),
        ("card 4111-1111-1111-1111 ok", "CREDIT_CARD"),
        ("card 5500 0000 0000 0004 ok", "CREDIT_CARD"),
        ("pay GB82 WEST 1234 5698 7654 32 please", "IBAN"),
        ("pay DE89370400440532013000 please", "IBAN"),
    ],
)
def test_each_kind_is_found(text: str, kind: str) -> None:
    out, counts = scrub_text(text)
    assert counts == {kind: 1}, (out, counts)
    assert f"[{kind}]" in out


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails Luhn
        "pay DE89370400440532013001 please",  # fails mod 97
        "released 2024-01-15 at 12:30:45",  # date and time
        "version 1.2.3.4.5 and 999.1.1.1",  # not IPv4
        "the year 2023 had 365 days",
    ],
)
def test_lookalikes_survive(text: str) -> None:
    assert scrub_text(text) == (text, {})


def test_checksums() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("FR14 2004 1010 0505 0001 3M02 606")
    assert not iban_valid("FR15 2004 1010 0505 0001 3M02 606")


def test_custom_patterns_and_kind_selection(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# employee ids\nEMPLOYEE E-\\d{6}\n", encoding="utf-8")
    (pat,) = load_patterns(f)
    cfg = ScrubConfig(kinds=frozenset({PiiKind.EMAIL}), custom=(pat,))
    out, counts = scrub_text("E-123456 mailed a@b.io from 10.0.0.1", cfg)
    assert out == "[EMPLOYEE] mailed [EMAIL] from 10.0.0.1"
    assert counts == {"EMPLOYEE": 1, "EMAIL": 1}
    f.write_text("BAD (unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad regex"):
        load_patterns(f)
    assert isinstance(pat, CustomPattern)


def test_near_duplicates_are_removed_and_distinct_kept() -> None:
    base = "the quick brown fox jumps over the lazy dog while the cat sleeps in the sun"
    docs = [
        base,
        "a completely different sentence about federated learning and privacy budgets",
        base + " today",  # near-duplicate
        base.upper(),  # same after normalisation
        "yet another unrelated document about secure aggregation of model updates",
    ]
    assert near_duplicates(docs, threshold=0.8) == [2, 3]
    # scrubbing first makes PII-only variants collapse together
    docs = [f"contact me at user{i}@mail.com about {base}" for i in range(4)]
    out, summary = scrub_documents(docs)
    assert summary.duplicates_removed == 3 and summary.counts == {"EMAIL": 4}
    assert len(out) == 1


def test_cli_scrub_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "text": "reach me at a@b.com or 192.168.1.1"},
        {"id": 2, "text": "reach me at c@d.com or 192.168.1.2"},
        {"id": 3, "text": "nothing to see here, just a sentence about gradient descent"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, [str(src), str(dst), "--threshold", "0.7"])
    assert res.exit_code == 0, res.output
    assert "EMAIL" in res.output and "near-duplicate" in res.output
    got = [json.loads(ln) for ln in dst.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in got] == [1, 3]
    assert got[0]["text"] == "reach me at [EMAIL] or [IPV4]"
    res = CliRunner().invoke(app, [str(src), str(dst), "--no-dedup"])
    assert res.exit_code == 0 and len(dst.read_text(encoding="utf-8").splitlines()) == 3


DATA = Path(__file__).parent / "data"


def test_labelled_corpus_recall_and_precision_per_kind() -> None:
    """The 220-line development corpus: every kind >= 0.95 recall and precision, and the
    libraries beat the old regex set overall (recall and precision)."""
    corpus = load_corpus(DATA / "pii_corpus.jsonl")
    assert len(corpus) >= 200
    ours = evaluate_corpus(corpus, find_pii)
    for kind, score in ours.per_kind.items():
        assert score.labelled >= 10, kind
        assert score.recall >= 0.95 and score.precision >= 0.95, (kind, score)
    old = evaluate_corpus(corpus, find_pii_regex).as_json()
    new = ours.as_json()
    assert new["recall"] > old["recall"] + 0.1 and new["precision"] > old["precision"] + 0.1


def test_held_out_corpus_is_measured_not_tuned() -> None:
    """48 lines written after the detector was frozen: reported as is (docs/privacy.md);
    this only pins that the libraries still beat the regexes there."""
    corpus = load_corpus(DATA / "pii_corpus_heldout.jsonl")
    new = evaluate_corpus(corpus, find_pii).as_json()
    old = evaluate_corpus(corpus, find_pii_regex).as_json()
    assert new["recall"] > old["recall"] and new["precision"] > old["precision"]


@pytest.mark.parametrize(
    ("text", "kind", "pii"),
    [
        ("write to jane [at] example [dot] com", "EMAIL", "jane [at] example [dot] com"),
        ("ring 2125550187 tonight", "PHONE", "2125550187"),  # bare 10 digits
        ("Dial 1-800-FLOWERS now", "PHONE", "1-800-FLOWERS"),  # vanity
        ("Paris: +33 1 23 45 67 89", "PHONE", "+33 1 23 45 67 89"),  # the whole French number
        ("pay gb82 west 1234 5698 7654 32", "IBAN", "gb82 west 1234 5698 7654 32"),  # lower case
    ],
)
def test_what_the_regexes_missed(text: str, kind: str, pii: str) -> None:
    assert [(s.kind.value, text[s.start : s.end]) for s in find_pii(text)] == [(kind, pii)]
    assert all(text[s.start : s.end] != pii for s in find_pii_regex(text))


def test_detection_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network (the TLD check reads tldextract's bundled snapshot) and no spaCy model."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("PII detection tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    out, counts = scrub_text("mail bob@example.org from 10.0.0.7, card 4111 1111 1111 1111")
    assert counts == {"EMAIL": 1, "IPV4": 1, "CREDIT_CARD": 1}, out
