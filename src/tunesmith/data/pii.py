"""Find and redact personal data in training text: regexes find candidates, checksums and ranges confirm them.

Kinds: email, phone (international `+CC ...` and US formats), credit card (Luhn), US SSN (dashed, valid
area/group/serial), IPv4 (octets 0-255), IBAN (mod-97). Bare digit runs are never called phones, so
atomic weights (1.0079), years and short numbers stay untouched.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    "credit_card": re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
    "ssn": re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
    "ipv4": re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)"),
    "phone": re.compile(
        r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}(?!\d)"  # international: +44 20 7946 0958
        r"|(?<![\w+(])(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?![\d-])"  # US: (555) 234-5678
    ),
}
# Earlier kinds win when matches overlap (an IBAN's digits are not also a card number).
PRIORITY = list(PATTERNS)


@dataclass
class PiiFinding:
    kind: str  # one of PATTERNS' keys
    start: int
    end: int
    text: str

    @property
    def placeholder(self) -> str:
        return f"[{self.kind.upper()}]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _phone_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 8 <= len(digits) <= 15 if candidate.startswith("+") else len(digits) in (10, 11)


# Cheap tests that rule a kind out before its regex runs (most rows hold no '@' and many no digit).
_DIGIT = re.compile(r"\d")
PREFILTERS: dict[str, Callable[[str], bool]] = {
    "email": lambda text: "@" in text,
    "ssn": lambda text: "-" in text,
    "ipv4": lambda text: "." in text,
}

VALIDATORS: dict[str, Callable[[str], bool]] = {
    "iban": iban_valid,
    "credit_card": _card_valid,
    "phone": _phone_valid,
}


def find_pii(text: str) -> list[PiiFinding]:
    """Confirmed findings in text order, without overlaps."""
    candidates = []
    has_digit = _DIGIT.search(text) is not None
    for kind, pattern in PATTERNS.items():
        if (kind != "email" and not has_digit) or not PREFILTERS.get(kind, bool)(text):
            continue
        validate = VALIDATORS.get(kind, lambda _: True)
        for match in pattern.finditer(text):
            if validate(match.group()):
                candidates.append(PiiFinding(kind, match.start(), match.end(), match.group()))
    candidates.sort(key=lambda f: (PRIORITY.index(f.kind), f.start))
    kept: list[PiiFinding] = []
    for finding in candidates:
        if all(finding.end <= other.start or other.end <= finding.start for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact_pii(text: str, findings: list[PiiFinding] | None = None) -> str:
    """Replace each finding with its placeholder: `[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`, `[SSN]`, `[IPV4]`, `[IBAN]`."""
    findings = find_pii(text) if findings is None else findings
    parts, cursor = [], 0
    for finding in findings:
        parts += [text[cursor : finding.start], finding.placeholder]
        cursor = finding.end
    return "".join(parts) + text[cursor:]


def masked_snippets(text: str, findings: list[PiiFinding], context: int = 30) -> list[str]:
    """For each finding, the text around it with every finding redacted, so a report never repeats the data."""
    redacted = redact_pii(text, findings)
    snippets, shift = [], 0
    for finding in findings:
        start = finding.start + shift
        end = start + len(finding.placeholder)
        shift += len(finding.placeholder) - len(finding.text)
        left, right = max(0, start - context), min(len(redacted), end + context)
        snippet = redacted[left:right].replace("\n", " ")
        snippets.append(("…" if left else "") + snippet + ("…" if right < len(redacted) else ""))
    return snippets
