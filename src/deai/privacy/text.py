"""Text preprocessing for data providers: PII scrubbing and near-duplicate removal.

PII detection (:func:`find_pii`) uses maintained libraries where they beat hand-written
regular expressions (measured on the labelled corpus ``tests/privacy/data/pii_corpus.jsonl``,
per kind; the old regex set is kept as :func:`find_pii_regex`, the baseline):

* phone numbers: Google's libphonenumber (``phonenumbers``), ``PhoneNumberMatcher`` at
  leniency VALID over the regions Presidio uses by default, international numbers in any
  region; vanity numbers (``1-800-FLOWERS``) parsed by ``phonenumbers`` too;
* e-mail, IBAN, credit card, IP: Microsoft Presidio's pattern recognizers
  (``presidio-analyzer``), each regex plus its checksum or validator (ISO 13616 mod 97 and
  per-country length for IBANs, Luhn for cards, ``ipaddress`` for IPs). They run without a
  spaCy model (no NLP engine is built) and offline (the e-mail TLD check reads
  ``tldextract``'s bundled public-suffix snapshot, never the network);
* what neither covers: obfuscated e-mail (``name [at] domain [dot] com``), lower-case
  IBANs (checked upper-cased), and a few negative contexts (a number right after "ISBN",
  "case no.", "version" ... is not a phone or an IP).

Each match is replaced by ``[KIND]``; overlapping detections keep the more specific kind
(IBAN, card, e-mail, IPv6, IPv4, phone) and then the longer span. Scrubbing is a filter,
not a guarantee: names, street addresses and free-form identifiers are not caught, which is
why training on the scrubbed text still wants differential privacy.

Near-duplicates: MinHash signatures of character 5-gram shingles (Broder 1997) indexed in
an LSH table (``datasketch``); a document whose estimated Jaccard similarity to an earlier
kept document reaches ``threshold`` is dropped (first occurrence wins). Deduplication
reduces memorisation, which is what membership inference and extraction attacks exploit
(Kandpal, Wallace, Raffel 2022).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
from datasketch import MinHash, MinHashLSH

from deai.errors import ConfigError


class PiiKind(Enum):
    EMAIL = "EMAIL"
    IBAN = "IBAN"
    CREDIT_CARD = "CREDIT_CARD"
    IPV6 = "IPV6"
    IPV4 = "IPV4"
    PHONE = "PHONE"


_PRIORITY = {k: i for i, k in enumerate(PiiKind)}  # earlier wins an overlap


@dataclass(frozen=True)
class PiiSpan:
    kind: PiiKind
    start: int
    end: int  # exclusive


# --------------------------------------------------------------------------- libraries

PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio's default set
# a number right after one of these words is an identifier, not a phone / an IP address
_NOT_PHONE_BEFORE = re.compile(
    r"(?:(?<!\w)(?:isbn(?:-1[03])?|issn|case|no\.|invoice|order|ticket|ref|sku|serial|patent|id)"
    r"|#)[\s:#-]*$",
    re.IGNORECASE,
)
_NOT_IP_BEFORE = re.compile(
    r"(?<!\w)(?:version|ver\.?|v|build|release[sd]?|firmware|section|chapter|python)[\s:]*$",
    re.IGNORECASE,
)
_VANITY = re.compile(
    r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?(?=[A-Z0-9-]*[A-Z])[A-Z0-9]{2,4}"
    r"(?:-?[A-Z0-9]{2,7})(?![\w-])"
)
_OBFUSCATED_EMAILS = (  # "name [at] host [dot] com" / "name (at) host.com" / "name at host dot com"
    re.compile(
        r"[\w.+-]+\s*[\[({]\s*at\s*[\])}]\s*[\w-]+"
        r"(?:\s*(?:[\[({]\s*dot\s*[\])}]|\.)\s*[A-Za-z0-9-]+)+",
        re.IGNORECASE,
    ),
    re.compile(r"(?<![\w.+-])[\w.+-]+ at [\w-]+(?: dot [A-Za-z0-9-]+)+\b", re.IGNORECASE),
)


@cache
def _recognizers() -> dict[PiiKind, Any]:
    """Presidio's pattern recognizers, built once. Imported lazily: the package pulls in
    heavy NLP modules at import, which plain ``import deai.privacy.text`` should not pay."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
    )

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline(pattern_text).fqdn)

    return {
        PiiKind.EMAIL: OfflineEmailRecognizer(),
        PiiKind.IBAN: IbanRecognizer(),
        PiiKind.CREDIT_CARD: CreditCardRecognizer(),
        PiiKind.IPV4: IpRecognizer(),
    }


def _presidio(kind: PiiKind, text: str) -> list[tuple[int, int]]:
    rec = _recognizers()[kind]
    entity = rec.supported_entities[0]
    return [(r.start, r.end) for r in rec.analyze(text, [entity], None)]


def _ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only, so offsets stay those of ``text``."""
    return "".join(c.upper() if c.isascii() else c for c in text)


PHONE_LENIENCY = phonenumbers.Leniency.VALID
_DATE_LIKE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{2,4}")
_NANP = ("US", "CA")


def _plausible_phone(raw: str, region: str | None) -> bool:
    """Filters on top of libphonenumber's validity: a bare digit run is a phone only in the
    NANP (elsewhere it is as likely an id), a date is not a phone, and neither is a list of
    small numbers (more than one single-digit group)."""
    if raw.isdigit() and region not in _NANP:
        return False
    if _DATE_LIKE.fullmatch(raw):
        return False
    return sum(1 for g in re.split(r"[\s.()-]+", raw) if len(g) == 1) <= 1


def _phones(text: str) -> list[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region, PHONE_LENIENCY):
            if _plausible_phone(m.raw_string, phonenumbers.region_code_for_number(m.number)):
                out.add((m.start, m.end))
    for v in _VANITY.finditer(text):
        try:
            num = phonenumbers.parse(v.group(0), "US")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            out.add(v.span())
    return [s for s in out if not _NOT_PHONE_BEFORE.search(text[max(0, s[0] - 12) : s[0]])]


def _ips(text: str) -> list[PiiSpan]:
    """Presidio's IP matches that are a whole token (not part of a longer dotted number or
    a version such as ``2.0.0.1-beta``), not after a version word, and not the unspecified
    address (``::``, ``0.0.0.0``), which identifies nobody."""
    out: list[PiiSpan] = []
    for a, b in _presidio(PiiKind.IPV4, text):
        before, after = text[max(0, a - 12) : a], text[b : b + 2]
        if _NOT_IP_BEFORE.search(before) or re.match(r"\.\d|-[A-Za-z]", after):
            continue
        if re.search(r"\d\.$", before):
            continue
        try:
            ip = ipaddress.ip_address(text[a:b].strip("[]"))
        except ValueError:
            continue
        if ip.is_unspecified:
            continue
        out.append(PiiSpan(PiiKind.IPV6 if ip.version == 6 else PiiKind.IPV4, a, b))
    return out


def find_pii(text: str, kinds: frozenset[PiiKind] = frozenset(PiiKind)) -> list[PiiSpan]:
    """Every PII span of the requested kinds in ``text``, non-overlapping, in order."""
    found: list[PiiSpan] = []
    if PiiKind.EMAIL in kinds:
        found += [PiiSpan(PiiKind.EMAIL, a, b) for a, b in _presidio(PiiKind.EMAIL, text)]
        for pattern in _OBFUSCATED_EMAILS:
            found += [PiiSpan(PiiKind.EMAIL, *m.span()) for m in pattern.finditer(text)]
    if PiiKind.IBAN in kinds:
        found += [
            PiiSpan(PiiKind.IBAN, a, b) for a, b in _presidio(PiiKind.IBAN, _ascii_upper(text))
        ]
    if PiiKind.CREDIT_CARD in kinds:  # Presidio's issuer patterns, plus any Luhn-valid run
        found += [
            PiiSpan(PiiKind.CREDIT_CARD, a, b) for a, b in _presidio(PiiKind.CREDIT_CARD, text)
        ]
        found += find_pii_regex(text, frozenset({PiiKind.CREDIT_CARD}))  # e.g. 2-series MC
    if kinds & {PiiKind.IPV4, PiiKind.IPV6}:
        found += [s for s in _ips(text) if s.kind in kinds]
    if PiiKind.PHONE in kinds:
        found += [PiiSpan(PiiKind.PHONE, a, b) for a, b in _phones(text)]
    return _resolve(found)


def _resolve(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Drop overlapped spans: the more specific kind wins, then the longer span."""
    kept: list[PiiSpan] = []
    for s in sorted(spans, key=lambda s: (_PRIORITY[s.kind], s.start - s.end, s.start)):
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


# --------------------------------------------------------------------------- the old regexes

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


def find_pii_regex(text: str, kinds: frozenset[PiiKind] = frozenset(PiiKind)) -> list[PiiSpan]:
    """The hand-written regex set this module used before (the measured baseline): each
    pattern in order (IBAN and card before phone), skipping text an earlier kind took."""
    kept: list[PiiSpan] = []
    for kind, pattern in _PATTERNS.items():
        if kind not in kinds:
            continue
        check = _CHECKS.get(kind, lambda _m: True)
        for m in pattern.finditer(text):
            span = PiiSpan(kind, *m.span())
            free = all(span.end <= k.start or span.start >= k.end for k in kept)
            if free and check(m.group(0)):
                kept.append(span)
    return sorted(kept, key=lambda s: s.start)


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
    for span in reversed(find_pii(text, cfg.kinds)):
        counts[span.kind.value] += 1
        text = f"{text[: span.start]}[{span.kind.value}]{text[span.end :]}"
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
