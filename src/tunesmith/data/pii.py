"""Find and redact personal data in training text: regexes find candidates, checksums and ranges confirm them.

Kinds: email, phone (international `+CC ...`, US, and national formats with a trunk 0), credit card (Luhn), US SSN (dashed or
spaced, valid area/group/serial), UK National Insurance number (allocated prefixes), IPv4 (octets 0-255),
IPv6 (parsed by `ipaddress`), IBAN (mod-97) and street address (house number, capitalised street name,
street-type word, then optional unit, city, US state + ZIP or UK postcode). Bare digit runs are never
called phones, so atomic weights (1.0079), years and short numbers stay untouched. Person names need a
language model and live in `person_names.py`.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# USPS street suffixes people actually write, plus the UK ones; a house number must precede them.
_STREET_TYPE = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace"
                r"|Close|Crescent|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Row|Mews|Gardens|Grove|Hill|Walk)")
_STREET_ADDRESS = (
    r"(?<![\w.,-])\d{1,5}[A-Za-z]?(?:-\d{1,5})?,?"                       # 221B, 1600, 12-14
    r"(?: (?:\d{1,3}(?:st|nd|rd|th)|[A-Z][A-Za-z'-]+)){1,4}"               # Baker, West 57th, Martin Luther King
    rf" {_STREET_TYPE}\b\.?(?: (?:N|S|E|W|NE|NW|SE|SW)\b)?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|#)\.? ?[\w-]+)?"   # , Apt 4B
    r"(?:,? [A-Z][a-z]+(?: [A-Z][a-z]+){0,2}(?=,? (?:[A-Z]{2} \d{5}|[A-Z]{1,2}\d)))?"  # city, only before state/postcode
    r"(?:,? [A-Z]{2} \d{5}(?:-\d{4})?\b|,? [A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b)?"   # CA 94105 | NW1 6XE
)
PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    "credit_card": re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
    # spaced form too, but never a slice of a longer digit run ("+44 123 45 6789" is a phone)
    "ssn": re.compile(r"(?<![\d-])(?<!\d )(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])(?! \d)"),
    "nino": re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z](?: ?\d{2}){3} ?[A-D]\b"),
    "ipv6": re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4}|:)(?![\w:]|\.\d)"),
    "ipv4": re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)"),
    "phone": re.compile(
        r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}(?!\d)"  # international: +44 20 7946 0958
        r"|(?<![\w+(])(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?![\d-])"  # US: (555) 234-5678
        r"|(?<![\w+.(-])(?:\(0\d{1,4}\)|0\d{1,4})(?:[ .-]\d{2,8}){1,4}(?![\w-]|\.\d)"  # trunk 0: 020 7946 0958, 06 12 34 56 78
    ),
    "street_address": re.compile(_STREET_ADDRESS),
}
# Earlier kinds win when matches overlap (an IBAN's digits are not also a card number; an IPv6 address
# with an IPv4 tail, ::ffff:192.0.2.1, is one IPv6 address).
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


def nino_valid(candidate: str) -> bool:
    """UK National Insurance number: prefixes BG, GB, KN, NK, NT, TN and ZZ are never allocated (HMRC NIM39110)."""
    compact = candidate.replace(" ", "")
    return compact[:2] not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"} and _spaced_consistently(candidate)


def _spaced_consistently(candidate: str) -> bool:
    """`AB123456C` or `AB 12 34 56 C`: a half-spaced run is more likely a table of numbers than an id."""
    return " " not in candidate or candidate.count(" ") == 4


def _ipv6_valid(candidate: str) -> bool:
    """A real address with at least three groups written out (an IPv4 tail counts as two): `ipaddress` rejects
    times (12:30:45) and MAC addresses; the group count rejects `::1`-style shorthands that name no host."""
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return sum(2 if "." in group else 1 for group in candidate.split(":") if group) >= 3


def _phone_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 8 <= len(digits) <= 15 if candidate.startswith("+") else len(digits) in (10, 11)


# Cheap tests that rule a kind out before its regex runs (most rows hold no '@' and many no digit).
_DIGIT = re.compile(r"\d")
PREFILTERS: dict[str, Callable[[str], bool]] = {
    "email": lambda text: "@" in text,
    "ssn": lambda text: "-" in text or " " in text,
    "ipv4": lambda text: "." in text,
    "ipv6": lambda text: "::" in text or text.count(":") >= 7,
}

VALIDATORS: dict[str, Callable[[str], bool]] = {
    "iban": iban_valid,
    "credit_card": _card_valid,
    "phone": _phone_valid,
    "nino": nino_valid,
    "ipv6": _ipv6_valid,
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
    """Replace each finding with its placeholder: `[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`, `[SSN]`, `[IPV4]`, ...

    One placeholder per kind; `redact.py` numbers them per distinct value so conversations stay coherent.
    """
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
