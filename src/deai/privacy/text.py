"""Text preprocessing for data providers: PII scrubbing and near-duplicate removal.

PII: e-mail addresses, phone numbers, IPv4/IPv6 addresses, credit-card numbers (only
digit runs that pass the Luhn check, so order numbers survive), IBANs (only strings that
pass the ISO 13616 mod-97 check) and user-configured regular expressions. Each match is
replaced by ``[KIND]``. Regex scrubbing is a best-effort filter, not a guarantee: names,
street addresses and free-form identifiers are not caught, which is why training on the
scrubbed text still wants differential privacy.

Near-duplicates: MinHash signatures of character 5-gram shingles (Broder 1997) indexed in
an LSH table (``datasketch``); a document whose estimated Jaccard similarity to an earlier
kept document reaches ``threshold`` is dropped (first occurrence wins). Deduplication
reduces memorisation, which is what membership inference and extraction attacks exploit
(Kandpal, Wallace, Raffel 2022).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from deai.errors import ConfigError


class PiiKind(Enum):
    EMAIL = "EMAIL"
    IBAN = "IBAN"
    CREDIT_CARD = "CREDIT_CARD"
    IPV6 = "IPV6"
    IPV4 = "IPV4"
    PHONE = "PHONE"


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H = r"[0-9A-Fa-f]{1,4}"
_PATTERNS: dict[PiiKind, re.Pattern[str]] = {
    PiiKind.EMAIL: re.compile(
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
    ),
    PiiKind.IBAN: re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
    PiiKind.CREDIT_CARD: re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
    PiiKind.IPV6: re.compile(
        rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,6}}:(?:{_H}(?::{_H}){{0,5}})?|::(?:{_H}:){{0,6}}{_H})(?![\w:])"
    ),
    PiiKind.IPV4: re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])"),
    PiiKind.PHONE: re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"
    ),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check (ISO/IEC 7812) over a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, map letters to 10..35,
    and the number must be 1 modulo 97."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    numeric = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(numeric) % 97 == 1


def _card_ok(m: str) -> bool:
    digits = re.sub(r"[ -]", "", m)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_ok(m: str) -> bool:
    digits = re.sub(r"\D", "", m)
    has_form = m.startswith("+") or "(" in m or bool(re.search(r"\d[ .-]\d", m))
    return 7 <= len(digits) <= 15 and has_form and not _DATE.fullmatch(m)


_CHECKS: dict[PiiKind, Callable[[str], bool]] = {
    PiiKind.IBAN: iban_valid,
    PiiKind.CREDIT_CARD: _card_ok,
    PiiKind.PHONE: _phone_ok,
}


@dataclass(frozen=True)
class CustomPattern:
    name: str  # replacement is [NAME]; an identifier
    pattern: re.Pattern[str]


def load_patterns(path: Path) -> tuple[CustomPattern, ...]:
    """Read user patterns, one per line: ``NAME REGEX`` (first whitespace splits); blank
    lines and lines starting with ``#`` are skipped."""
    out: list[CustomPattern] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isidentifier():
            raise ConfigError(f"{path}:{i}: expected 'NAME REGEX', got {line!r}")
        try:
            out.append(CustomPattern(parts[0].upper(), re.compile(parts[1])))
        except re.error as e:
            raise ConfigError(f"{path}:{i}: bad regex {parts[1]!r}: {e}") from e
    return tuple(out)


@dataclass(frozen=True)
class ScrubConfig:
    kinds: frozenset[PiiKind] = frozenset(PiiKind)  # built-in detectors to run
    custom: tuple[CustomPattern, ...] = ()  # user patterns, applied after the built-ins


@dataclass(frozen=True)
class ScrubSummary:
    documents_in: int
    documents_out: int
    duplicates_removed: int
    counts: dict[str, int] = field(default_factory=dict)  # replacements per kind / pattern


def scrub_text(text: str, config: ScrubConfig | None = None) -> tuple[str, Counter[str]]:
    """Replace every detected PII span in ``text`` by ``[KIND]``; return the counts."""
    cfg = config or ScrubConfig()
    counts: Counter[str] = Counter()
    for kind, pattern in _PATTERNS.items():  # order matters: IBAN/card before phone
        if kind not in cfg.kinds:
            continue
        check = _CHECKS.get(kind, lambda _m: True)

        def repl(
            m: re.Match[str], kind: PiiKind = kind, check: Callable[[str], bool] = check
        ) -> str:
            if not check(m.group(0)):
                return m.group(0)
            counts[kind.value] += 1
            return f"[{kind.value}]"

        text = pattern.sub(repl, text)
    for cp in cfg.custom:
        text, k = cp.pattern.subn(f"[{cp.name}]", text)
        if k:
            counts[cp.name] += k
    return text, counts


def _minhash(text: str, num_perm: int, seed: int) -> MinHash:
    norm = " ".join(text.lower().split())
    shingles = {norm[i : i + 5] for i in range(max(1, len(norm) - 4))}
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    return m


def near_duplicates(
    docs: Sequence[str], threshold: float = 0.8, num_perm: int = 128, seed: int = 1
) -> list[int]:
    """Indices of documents that near-duplicate an earlier kept one (MinHash + LSH)."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"dedup threshold must be in (0, 1], got {threshold}")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[str, MinHash] = {}
    dups: list[int] = []
    for i, doc in enumerate(docs):
        m = _minhash(doc, num_perm, seed)
        if any(kept[k].jaccard(m) >= threshold for k in lsh.query(m)):
            dups.append(i)
            continue
        key = str(i)
        lsh.insert(key, m)
        kept[key] = m
    return dups


def scrub_documents(
    docs: Iterable[str],
    config: ScrubConfig | None = None,
    dedup: bool = True,
    threshold: float = 0.8,
) -> tuple[list[str], ScrubSummary]:
    """Scrub every document, then drop near-duplicates of the scrubbed text."""
    counts: Counter[str] = Counter()
    out: list[str] = []
    for d in docs:
        s, c = scrub_text(d, config)
        counts.update(c)
        out.append(s)
    n_in = len(out)
    if dedup:
        drop = set(near_duplicates(out, threshold))
        out = [d for i, d in enumerate(out) if i not in drop]
    summary = ScrubSummary(n_in, len(out), n_in - len(out), dict(sorted(counts.items())))
    return out, summary


def scrub_file(
    src: Path,
    dst: Path,
    config: ScrubConfig | None = None,
    dedup: bool = True,
    threshold: float = 0.8,
) -> ScrubSummary:
    """Scrub a corpus file: ``.jsonl`` (one object per line, its ``"text"`` field is
    scrubbed, other fields kept) or plain text (one document per non-empty line)."""
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if src.suffix == ".jsonl":
        records = []
        for i, ln in enumerate(lines, 1):
            rec = json.loads(ln)
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise ConfigError(f"{src}:{i}: expected an object with a string 'text' field")
            records.append(rec)
        texts, summary = _scrub_keep_index([r["text"] for r in records], config, dedup, threshold)
        body = [json.dumps({**records[i], "text": t}, ensure_ascii=False) for i, t in texts]
    else:
        texts, summary = _scrub_keep_index(lines, config, dedup, threshold)
        body = [t for _, t in texts]
    dst.write_text("".join(b + "\n" for b in body), encoding="utf-8")
    return summary


def _scrub_keep_index(
    docs: list[str], config: ScrubConfig | None, dedup: bool, threshold: float
) -> tuple[list[tuple[int, str]], ScrubSummary]:
    scrubbed, summary = scrub_documents(docs, config, dedup=False)
    drop = set(near_duplicates(scrubbed, threshold)) if dedup else set()
    kept = [(i, s) for i, s in enumerate(scrubbed) if i not in drop]
    return kept, ScrubSummary(len(docs), len(kept), len(drop), summary.counts)
