"""Find person names: spaCy's named-entity recogniser where a spaCy pipeline is installed, else cue rules.

A name has no checksum, so a regex cannot tell "Grace Hopper" from "Grace Notes"; a trained recogniser
can, and spaCy is the maintained one that runs offline on CPU. It is an optional dependency: spaCy and an
English pipeline (`pip install spacy` and `python -m spacy download en_core_web_sm`, or a wheel of it).
Without one, `CueNames` finds only names that a cue introduces — a title (`Dr. Ada Lovelace`), a
salutation (`Dear Ada Lovelace,`) or a self-introduction (`I am Ada Lovelace`) — and misses bare
names; `benchmarks/pii_redaction.py` measures both.
"""
from __future__ import annotations

import importlib.util
import re
from typing import Protocol

from tunesmith.data.pii import PiiFinding

DEFAULT_NER_MODEL = "en_core_web_sm"
KIND = "person_name"
_NAME_WORD = r"[A-Z](?:'[A-Z])?[a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"  # Ada, O'Brien, McDonald, Smith-Jones
_PARTICLES = {"de", "da", "di", "del", "della", "van", "von", "der", "den", "la", "le", "bin", "ibn", "al", "el"}
_PARTICLE = "(?:" + "|".join(sorted(_PARTICLES)) + ") "
_NAME = rf"{_NAME_WORD}(?: (?:[A-Z]\. |{_PARTICLE})?{_NAME_WORD}){{0,2}}"  # Ada K. Lovelace, Pieter de Vries
_CUED_NAME = re.compile(
    rf"\b(?:(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame)\.? "  # a title: one word is enough (Dr. Smith)
    rf"|(?:[Dd]ear|[Mm]y name is|I am|I'm|[Nn]ame:|[Ss]igned,?|[Rr]egards,|[Ss]incerely,|[Tt]hanks,)\s+(?=\S+ (?:{_PARTICLE})?[A-Z]))"  # two words
    rf"(?P<name>{_NAME})"
)


def _full_name(span: str) -> bool:
    """Two or more words on one line, each capitalised except name particles (`Pieter de Vries`)."""
    words = span.split(" ")
    return ("\n" not in span and len(words) >= 2 and words[0][:1].isupper() and words[-1][:1].isupper()
            and all(word[:1].isupper() or word in _PARTICLES for word in words))


class MissingNerModel(RuntimeError):
    """A named spaCy pipeline is not installed."""


class NameDetector(Protocol):
    description: str  # for reports: which detector found the names

    def find(self, text: str) -> list[PiiFinding]: ...


class SpacyNames:
    """PERSON entities from a spaCy pipeline, plus the cue rules' names (the recogniser misses `Regards, Ada`).

    A PERSON entity counts only as two or more capitalised words (particles such as `de` or `van` allowed):
    on the demo's chemistry chat en_core_web_sm calls element symbols and names people ("Li", "Nickel",
    hundreds of times), and a lone capitalised word is as often a place or a thing as a person.
    Only the tokeniser and recogniser run; the parser and tagger are not needed.
    """

    def __init__(self, model: str = DEFAULT_NER_MODEL):
        import spacy

        self.nlp = spacy.load(model, disable=["tagger", "parser", "senter", "attribute_ruler", "lemmatizer"])
        self.cues = CueNames()
        self.description = f"spaCy {spacy.__version__} NER ({model} {self.nlp.meta.get('version', '?')}) + cue rules"

    def find(self, text: str) -> list[PiiFinding]:
        # spaCy refuses texts over max_length to bound the parser's memory; only the recogniser runs here
        self.nlp.max_length = max(self.nlp.max_length, len(text) + 1)
        entities = [(e.label_, e.start_char, e.end_char) for e in self.nlp(text).ents]
        return names_from_entities(text, entities, self.cues.find(text))


def names_from_entities(text: str, entities: list[tuple[str, int, int]], cued: list[PiiFinding]) -> list[PiiFinding]:
    """The cued names, plus each (label, start, end) PERSON entity that is a full name and overlaps none."""
    findings = list(cued)
    for label, start, end in entities:
        span = text[start:end].removesuffix("'s").removesuffix("’s")
        end = start + len(span)
        if label == "PERSON" and _full_name(span) and all(end <= f.start or f.end <= start for f in findings):
            findings.append(PiiFinding(KIND, start, end, span))
    return sorted(findings, key=lambda finding: finding.start)


class CueNames:
    """Names after a title, salutation or self-introduction: precise, but blind to a bare name in a sentence."""

    description = "cue rules (title, salutation, 'my name is'); no NER model in use"

    def find(self, text: str) -> list[PiiFinding]:
        return [PiiFinding(KIND, m.start("name"), m.end("name"), m.group("name")) for m in _CUED_NAME.finditer(text)]


def ner_model_installed(model: str = DEFAULT_NER_MODEL) -> bool:
    return importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(model) is not None


def name_detector(model: str | None = None) -> NameDetector:
    """`model=None`: spaCy with the default English pipeline when installed, else the cue rules.

    A model asked for by name must be installed: silently falling back would hide a drop in recall.
    """
    if model is None:
        return SpacyNames() if ner_model_installed() else CueNames()
    if not ner_model_installed(model):
        raise MissingNerModel(f"NER model '{model}' is not installed — pip install 'spacy>=3.8,<3.9', then "
                              f"python -m spacy download {model} (or pip install its wheel)")
    return SpacyNames(model)
