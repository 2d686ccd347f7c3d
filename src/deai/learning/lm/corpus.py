"""A deterministic, generated English-like corpus (no downloads).

A small probabilistic grammar writes sentences with subject-verb agreement, adjectives,
prepositional phrases, relative clauses, questions and numbers. Two :class:`Domain` s share
the grammar but not the nouns, verbs and adjectives, so a model pre-trained on one domain
has something to learn when fine-tuned (for example with LoRA) on the other. The same
``(n_chars, seed, domain)`` always yields the same text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Domain(StrEnum):
    TOWN = "town"  # people, shops and streets
    FARM = "farm"  # animals, fields and weather


@dataclass(frozen=True)
class _Lexicon:
    nouns: tuple[str, ...]  # singular; plural adds "s"
    verbs: tuple[str, ...]  # transitive, base form
    adjectives: tuple[str, ...]
    places: tuple[str, ...]
    names: tuple[str, ...]


_LEXICON = {
    Domain.TOWN: _Lexicon(
        nouns=("baker", "doctor", "teacher", "child", "clerk", "driver", "painter", "singer"),
        verbs=("greet", "help", "follow", "visit", "call", "watch", "thank", "meet"),
        adjectives=("busy", "quiet", "young", "kind", "tired", "clever", "polite", "famous"),
        places=("market", "station", "library", "bridge", "square", "bakery", "school"),
        names=("Anna", "Tom", "Lena", "Omar", "Ruth", "Felix"),
    ),
    Domain.FARM: _Lexicon(
        nouns=("goat", "horse", "farmer", "duck", "sheep", "dog", "hen", "pig"),
        verbs=("chase", "feed", "carry", "pull", "find", "push", "guard", "lead"),
        adjectives=("muddy", "hungry", "brown", "old", "strong", "sleepy", "wild", "noisy"),
        places=("barn", "field", "pond", "orchard", "meadow", "stable", "hill"),
        names=("Bella", "Max", "Daisy", "Jack", "Rosie", "Sam"),
    ),
}

_IRREGULAR_PLURALS = {"child": "children", "sheep": "sheep"}
_NUMBERS = ("two", "three", "four", "five", "six", "seven")
_PREPOSITIONS = ("near", "behind", "inside", "beside", "across")
_TIMES = ("in the morning", "at noon", "every day", "after the rain", "before dark")


class _Writer:
    def __init__(self, rng: random.Random, lex: _Lexicon) -> None:
        self.rng = rng
        self.lex = lex

    def pick(self, options: tuple[str, ...]) -> str:
        return self.rng.choice(options)

    def noun_phrase(self) -> tuple[str, bool]:
        """A noun phrase and whether it is plural."""
        r = self.rng.random()
        if r < 0.2:
            return self.pick(self.lex.names), False
        plural = r > 0.65
        noun = self.pick(self.lex.nouns)
        if plural:
            noun = _IRREGULAR_PLURALS.get(noun, noun + "s")
        adj = self.pick(self.lex.adjectives) + " " if self.rng.random() < 0.5 else ""
        if plural and self.rng.random() < 0.4:
            return f"{self.pick(_NUMBERS)} {adj}{noun}", True
        det = "the" if plural or self.rng.random() < 0.6 else "a"
        return f"{det} {adj}{noun}", plural

    def verb(self, plural: bool) -> str:
        v = self.pick(self.lex.verbs)
        if plural:
            return v
        if v.endswith("y") and v[-2] not in "aeiou":
            return v[:-1] + "ies"
        return v + ("es" if v.endswith(("sh", "ch", "s")) else "s")

    def statement(self) -> str:
        subj, plural = self.noun_phrase()
        obj, _ = self.noun_phrase()
        s = f"{subj} {self.verb(plural)} {obj}"
        if self.rng.random() < 0.3:
            who, who_plural = self.noun_phrase()
            s += f" that {who} {self.verb(who_plural)}"
        if self.rng.random() < 0.5:
            s += f" {self.pick(_PREPOSITIONS)} the {self.pick(self.lex.places)}"
        if self.rng.random() < 0.3:
            s += f" {self.pick(_TIMES)}"
        return s[0].upper() + s[1:] + "."

    def question(self) -> str:
        subj, plural = self.noun_phrase()
        obj, _ = self.noun_phrase()
        aux = "do" if plural else "does"
        return f"Why {aux} {subj} {self.pick(self.lex.verbs)} {obj}?"

    def sentence(self) -> str:
        return self.question() if self.rng.random() < 0.15 else self.statement()


def generate(n_chars: int, seed: int = 0, domain: Domain = Domain.TOWN) -> str:
    """At least ``n_chars`` characters of text, cut at a sentence boundary."""
    writer = _Writer(random.Random(f"{domain.value}:{seed}"), _LEXICON[domain])
    parts: list[str] = []
    size = 0
    while size < n_chars:
        paragraph = " ".join(writer.sentence() for _ in range(writer.rng.randint(2, 6)))
        parts.append(paragraph + "\n")
        size += len(paragraph) + 1
    return "".join(parts)
