"""Decide whether a generated answer counts as correct: exact, normalized, contains, regex, numeric.

`contains_answer` is the default for short-fact QA: a chat model answers in a sentence
("The chemical symbol for gold is Au."), so the reference must appear in the prediction as whole
tokens: "Au" does not match "Australia" and "26" does not match "126" or "26.98".
"""
from __future__ import annotations

import re
import string
from typing import Callable

ARTICLES = {"a", "an", "the"}
# Punctuation that separates tokens; "." and "," inside a number are handled before this.
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def normalize_answer(text: str, case_sensitive: bool = False) -> str:
    """Casefold (unless case_sensitive), drop punctuation and articles, collapse whitespace.

    Decimal points inside numbers survive ("26.98" stays one token) and thousands separators
    vanish ("1,000" -> "1000"), so numbers keep their value. This compares answers (the SQuAD
    normalization, plus numbers); `data.phrasings.normalize_wording` compares question wordings.
    """
    if not case_sensitive:
        text = text.casefold()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text)  # protect decimal points from the punctuation pass
    text = _PUNCTUATION.sub(" ", text).replace("\0", ".")
    return " ".join(word for word in text.split() if word.casefold() not in ARTICLES)


def exact(prediction: str, answer: str) -> bool:
    return prediction.strip() == answer.strip()


def normalized(prediction: str, answer: str, case_sensitive: bool = False) -> bool:
    return normalize_answer(prediction, case_sensitive) == normalize_answer(answer, case_sensitive)


def contains_answer(prediction: str, answer: str, case_sensitive: bool = False) -> bool:
    """The normalised answer appears in the normalised prediction as a whole run of tokens."""
    target = normalize_answer(answer, case_sensitive).split()
    words = normalize_answer(prediction, case_sensitive).split()
    if not target:
        return False
    width = len(target)
    return any(words[i : i + width] == target for i in range(len(words) - width + 1))


def regex(prediction: str, answer: str, flags: int = re.IGNORECASE) -> bool:
    """`answer` is a regular expression searched for anywhere in the prediction."""
    return re.search(answer, prediction, flags) is not None


def first_number(text: str) -> float | None:
    found = _NUMBER.search(text)
    if found is None:
        return None
    try:
        return float(found.group().replace(",", ""))
    except ValueError:  # a lone sign or "." cannot happen with this pattern, but stay safe
        return None


def numeric(prediction: str, answer: str | float, rel_tol: float = 0.0, abs_tol: float = 1e-9) -> bool:
    """The first number in the prediction equals the answer within max(rel_tol * |answer|, abs_tol)."""
    value = first_number(prediction)
    target = float(answer) if not isinstance(answer, str) else first_number(answer)
    if value is None or target is None:
        return False
    return abs(value - target) <= max(rel_tol * abs(target), abs_tol)


METHODS: dict[str, Callable[..., bool]] = {
    "exact": exact,
    "normalized": normalized,
    "contains_answer": contains_answer,
    "regex": regex,
    "numeric": numeric,
}


def match(prediction: str, answer: str, method: str = "contains_answer", **opts) -> bool:
    """Dispatch to one matcher by name; `opts` go to it (e.g. case_sensitive=True, rel_tol=0.01)."""
    if method not in METHODS:
        raise ValueError(f"unknown match method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](prediction, answer, **opts)
