"""Measured recall and precision of a PII detector on a labelled corpus.

The corpus is JSON lines: ``{"text": ..., "spans": [[KIND, substring], ...]}``, each
substring occurring in the text (located in order). A labelled span is *recalled* when the
detector's spans cover every one of its characters (whatever kind they say: what matters
for privacy is that it is gone). A detected span is a *true positive* when it overlaps a
labelled span, else a false positive. Recall is per labelled kind, precision per detected
kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deai.errors import ConfigError
from deai.privacy.text import PiiKind, PiiSpan


@dataclass(frozen=True)
class LabelledLine:
    text: str
    spans: tuple[PiiSpan, ...]


def load_corpus(path: Path) -> list[LabelledLine]:
    out: list[LabelledLine] = []
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        rec = json.loads(raw)
        text, at, spans = rec["text"], 0, []
        for kind, sub in rec["spans"]:
            start = text.find(sub, at)
            if start < 0:
                raise ConfigError(f"{path}:{i}: {sub!r} is not in the text after offset {at}")
            spans.append(PiiSpan(PiiKind(kind), start, start + len(sub)))
            at = start + len(sub)
        out.append(LabelledLine(text, tuple(spans)))
    return out


@dataclass
class KindScore:
    labelled: int = 0
    recalled: int = 0
    detected: int = 0
    correct: int = 0
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.recalled / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else 1.0


@dataclass
class CorpusScore:
    per_kind: dict[PiiKind, KindScore]

    def as_json(self) -> dict[str, Any]:
        return {
            "per_kind": {
                k.value: {
                    "labelled": s.labelled,
                    "recall": s.recall,
                    "detected": s.detected,
                    "precision": s.precision,
                    "misses": s.misses,
                    "false_positives": s.false_positives,
                }
                for k, s in self.per_kind.items()
            },
            "recall": _ratio(sum(s.recalled for s in self.per_kind.values()), self._labelled()),
            "precision": _ratio(
                sum(s.correct for s in self.per_kind.values()),
                sum(s.detected for s in self.per_kind.values()),
            ),
        }

    def _labelled(self) -> int:
        return sum(s.labelled for s in self.per_kind.values())


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def evaluate_corpus(
    corpus: list[LabelledLine], detect: Callable[[str], list[PiiSpan]]
) -> CorpusScore:
    scores = {k: KindScore() for k in PiiKind}
    for line in corpus:
        found = detect(line.text)
        covered: set[int] = set()
        for s in found:
            covered.update(range(s.start, s.end))
        for lab in line.spans:
            sc = scores[lab.kind]
            sc.labelled += 1
            if set(range(lab.start, lab.end)) <= covered:
                sc.recalled += 1
            else:
                sc.misses.append(line.text[lab.start : lab.end])
        for s in found:
            sc = scores[s.kind]
            sc.detected += 1
            if any(s.start < lab.end and lab.start < s.end for lab in line.spans):
                sc.correct += 1
            else:
                sc.false_positives.append(f"{line.text[s.start : s.end]!r} in {line.text!r}")
    return CorpusScore(scores)
