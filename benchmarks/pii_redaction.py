"""Recall and false positives of `tunesmith data redact`'s detectors, per kind, on real text seeded with known PII.

Run as: .venv/bin/python benchmarks/pii_redaction.py [--seeds 200] [--ner-model en_core_web_sm] [--out FILE]

Real text: the paragraphs of examples/general/devils_dictionary.txt (public-domain prose) and the message
contents of examples/elements/train.jsonl (the demo's chat rows). Each seed is one generated value —
Luhn-valid cards, mod-97-valid IBANs, valid-range SSNs, allocated-prefix NINOs, emails, phones in several
national and international formats, IPv4/IPv6, street addresses, person names — written into a sentence
template and inserted at a sentence boundary of a randomly chosen real document, so its offsets are known.
Per kind the script reports:
- recall: seeds covered whole by one finding of their own kind;
- redacted: seeds whose every character ends up inside some finding (any kind) — what privacy needs;
- false_positives_seeded: findings of the kind in seeded documents that touch no seed;
- false_positives_unseeded: findings of the kind on the same real documents without seeds. The prose
  quotes real and invented people ("Ambrose Bierce", "Philippe of Orleans"), so person-name findings there
  are partly true; the other kinds have no real instance in either text.
Each name detector available runs: the cue rules always, spaCy NER when `--ner-model` (or the default
en_core_web_sm) is installed. Same seed, same documents, same values.
"""
from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from tunesmith.data.person_names import DEFAULT_NER_MODEL, CueNames, NameDetector, SpacyNames, ner_model_installed
from tunesmith.data.pii import PiiFinding
from tunesmith.data.redact import find_personal_data

REPO = Path(__file__).resolve().parents[1]
FIRST = ["Maria", "James", "Priya", "Chen", "Fatima", "Olumide", "Sofia", "Liam", "Aiko", "Mateus", "Ingrid",
         "Dmitri", "Amara", "Jonas", "Lucia", "Tariq", "Hannah", "Kwame", "Elena", "Rahul", "Siobhan", "Mehmet",
         "Yuki", "Carlos", "Nadia", "Pieter", "Grace", "Omar", "Freya", "Diego"]
LAST = ["Gonzalez", "Okafor", "Raman", "Wei", "Haddad", "Adeyemi", "Rossi", "Murphy", "Tanaka", "Silva",
        "Johansson", "Volkov", "Mensah", "Becker", "Fernandez", "Hussain", "Schmidt", "Boateng", "Popescu",
        "Sharma", "O'Brien", "Yilmaz", "Sato", "Moreno", "Kowalski", "de Vries", "Thompson", "Nasser",
        "Lindqvist", "Alvarez"]
STREETS = ["Baker", "Maple", "Oak", "High", "Church", "Elm", "Park", "Station", "Victoria", "Washington",
           "Lincoln", "Sunset", "Cedar", "Mill", "King", "Queen", "Willow", "Lake", "Hill", "Main"]
STREET_TYPES = ["Street", "St", "Avenue", "Ave.", "Road", "Rd", "Lane", "Drive", "Boulevard", "Close", "Way", "Place"]
CITIES_US = [("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Denver", "CO"), ("San Jose", "CA")]
CITIES_UK = ["London", "Leeds", "Bristol", "Glasgow", "Cardiff"]
DOMAINS = ["example.com", "mail.example.org", "example.co.uk", "corp.example.net"]
# Sentence templates per kind; {} is the value. Names get bare templates too: no cue introduces them.
TEMPLATES = {
    "person_name": {"cued": ["Dear {},", "My name is {} and I need help.", "Regards, {}", "Dr. {} signed it."],
                    "bare": ["{} called about the invoice.", "I spoke with {} yesterday.",
                             "The report was written by {} last week.", "Please forward this to {} today."]},
    "default": ["Contact: {}.", "You can reach me at {} any time.", "The record lists {} for this customer.",
                "Use {} for the refund."],
}


def luhn_complete(digits: str) -> str:
    """Append the check digit that makes `digits` Luhn-valid."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


def iban_complete(country: str, bban: str) -> str:
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def grouped(value: str, sizes: list[int], separator: str) -> str:
    parts, cursor = [], 0
    for size in sizes:
        parts.append(value[cursor:cursor + size])
        cursor += size
    return separator.join(part for part in parts + [value[cursor:]] if part)


def make_card(rng: random.Random) -> tuple[str, str]:
    brand = rng.choice(["visa", "mastercard", "amex", "discover"])
    if brand == "amex":
        number = luhn_complete(rng.choice(["34", "37"]) + digits(rng, 12))
        return rng.choice([grouped(number, [4, 6], " "), grouped(number, [4, 6], "-"), number]), brand
    prefix = {"visa": "4", "mastercard": str(rng.randint(51, 55)), "discover": "6011"}[brand]
    number = luhn_complete(prefix + digits(rng, 15 - len(prefix)))
    style = rng.choice(["spaced", "dashed", "plain"])
    return {"spaced": grouped(number, [4] * 3, " "), "dashed": grouped(number, [4] * 3, "-"), "plain": number}[style], f"{brand}_{style}"


def make_iban(rng: random.Random) -> tuple[str, str]:
    country, bban = rng.choice([
        ("DE", digits(rng, 18)), ("GB", "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + digits(rng, 14)),
        ("FR", digits(rng, 23)), ("NL", "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + digits(rng, 10)),
        ("ES", digits(rng, 20)),
    ])
    iban = iban_complete(country, bban)
    return (grouped(iban, [4] * 8, " "), f"{country}_grouped") if rng.random() < 0.5 else (iban, f"{country}_compact")


def make_phone(rng: random.Random) -> tuple[str, str]:
    area, exchange, line = rng.randint(201, 989), rng.randint(200, 999), digits(rng, 4)
    formats = {
        "us_parens": f"({area}) {exchange}-{line}", "us_dashed": f"{area}-{exchange}-{line}",
        "us_dotted": f"{area}.{exchange}.{line}", "us_plus1": f"+1 {area} {exchange} {line}",
        "e164": f"+1{area}{exchange}{line}", "uk_international": f"+44 20 {digits(rng, 4)} {digits(rng, 4)}",
        "fr_international": "+33 6 " + " ".join(digits(rng, 2) for _ in range(4)),
        "de_international": f"+49 30 {digits(rng, 8)}", "uk_national": f"020 {digits(rng, 4)} {digits(rng, 4)}",
        "fr_national": "06 " + " ".join(digits(rng, 2) for _ in range(4)), "de_national": f"030 {digits(rng, 8)}",
        "us_spaced": f"{area} {exchange} {line}", "uk_plus_trunk": f"+44 (0)20 {digits(rng, 4)} {digits(rng, 4)}",
    }
    style = rng.choice(list(formats))
    return formats[style], style


def make_ssn(rng: random.Random) -> tuple[str, str]:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    value = f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"
    style = rng.choice(["dashed", "dashed", "spaced", "plain"])  # plain nine digits: not detected (any number)
    return {"dashed": "-", "spaced": " ", "plain": ""}[style].join(value), style


def make_nino(rng: random.Random) -> tuple[str, str]:
    while True:
        prefix = rng.choice("ABCEGHJKLMNOPRSTWXYZ") + rng.choice("ABCEGHJKLMNPRSTWXYZ")
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    body, suffix = [digits(rng, 2) for _ in range(3)], rng.choice("ABCD")
    return (prefix + "".join(body) + suffix, "compact") if rng.random() < 0.5 else (" ".join([prefix, *body, suffix]), "spaced")


def make_ipv6(rng: random.Random) -> tuple[str, str]:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups), "full"
    return f"2001:db8:{groups[2]}::{groups[6]}:{groups[7]}", "compressed"


def make_address(rng: random.Random) -> tuple[str, str]:
    street = f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"
    style = rng.choice(["street_only", "us_full", "uk_full", "continental"])
    if style == "continental":  # street before number, as in most of Europe: not detected
        return f"{rng.choice(['Hauptstraße', 'Rue de Rivoli', 'Via Roma', 'Kerkstraat'])} {rng.randint(1, 200)}, {digits(rng, 5)} {rng.choice(['Berlin', 'Paris', 'Roma'])}", style
    if style == "us_full":
        city, state = rng.choice(CITIES_US)
        return f"{street}, {city}, {state} {digits(rng, 5)}", style
    if style == "uk_full":
        postcode = f"{rng.choice(['NW', 'SE', 'LS', 'BS', 'G'])}{rng.randint(1, 20)} {rng.randint(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
        return f"{street}, {rng.choice(CITIES_UK)} {postcode}", style
    return street, style


def make_email(rng: random.Random) -> tuple[str, str]:
    local = ".".join("".join(c for c in name.lower() if c.isalpha()) for name in (rng.choice(FIRST), rng.choice(LAST)))
    return f"{local}{rng.choice(['', str(rng.randint(1, 99)), '+news'])}@{rng.choice(DOMAINS)}", "plain"


GENERATORS = {
    "email": make_email,
    "phone": make_phone,
    "credit_card": make_card,
    "iban": make_iban,
    "ssn": make_ssn,
    "nino": make_nino,
    "ipv4": lambda rng: (".".join(str(rng.randint(1, 254)) for _ in range(4)), "dotted"),
    "ipv6": make_ipv6,
    "street_address": make_address,
    "person_name": lambda rng: (f"{rng.choice(FIRST)} {rng.choice(LAST)}", "full_name"),
}


def real_documents() -> dict[str, list[str]]:
    prose = (REPO / "examples/general/devils_dictionary.txt").read_text().split("\n\n")
    chat = [message["content"] for line in (REPO / "examples/elements/train.jsonl").read_text().splitlines()
            for message in json.loads(line)["messages"]]
    return {"devils_dictionary": [p for p in prose if p.strip()], "elements_chat": chat}


def seed_document(rng: random.Random, document: str, kind: str) -> tuple[str, int, int, str]:
    """Insert one templated value at a sentence boundary; returns (text, value start, value end, format)."""
    value, value_format = GENERATORS[kind](rng)
    if kind == "person_name":
        value_format = rng.choice(["cued", "bare"])
        template = rng.choice(TEMPLATES[kind][value_format])
    else:
        template = rng.choice(TEMPLATES["default"])
    boundaries = [0] + [i + 2 for i in range(len(document) - 1) if document[i] in ".?!" and document[i + 1] == " "]
    at = rng.choice(boundaries + [len(document)])
    before, after = document[:at], document[at:]
    separator = "" if not before or before.endswith((" ", "\n")) else " "
    sentence = template.format(value)
    start = len(before) + len(separator) + template.index("{}")
    text = before + separator + sentence + (" " if after and not after.startswith(" ") else "") + after
    return text, start, start + len(value), value_format


def covered(start: int, end: int, findings: list[PiiFinding], kind: str | None) -> bool:
    """Every character of [start, end) lies inside a finding (of `kind`, or of any kind when None)."""
    spans = sorted((f.start, f.end) for f in findings if kind is None or f.kind == kind)
    cursor = start
    for span_start, span_end in spans:
        if span_start <= cursor < span_end:
            cursor = span_end
    return cursor >= end if kind is None else any(s <= start and end <= e for s, e in spans)


def measure_seeded(names: NameDetector, corpora: dict[str, list[str]], seeds: int, seed: int) -> dict:
    rng = random.Random(seed)
    documents = [(name, doc) for name, docs in corpora.items() for doc in docs]
    tally: dict[str, Counter] = defaultdict(Counter)
    by_format: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for kind in GENERATORS:
        for _ in range(seeds):
            text, start, end, value_format = seed_document(rng, rng.choice(documents)[1], kind)
            findings = find_personal_data(text, names)
            found = covered(start, end, findings, kind)
            tally[kind].update(seeds=1, found=found, redacted=covered(start, end, findings, None))
            by_format[kind][value_format].update(seeds=1, found=found)
            for finding in findings:
                if finding.end <= start or end <= finding.start:
                    tally[finding.kind]["false_positives_seeded"] += 1
    return {kind: {"seeds": t["seeds"], "recall": round(t["found"] / t["seeds"], 3),
                   "redacted": round(t["redacted"] / t["seeds"], 3),
                   "false_positives_seeded": t["false_positives_seeded"],
                   "found_by_format": {f: f"{c['found']}/{c['seeds']}" for f, c in sorted(by_format[kind].items())}}
            for kind, t in tally.items() if t["seeds"]}


def measure_unseeded(names: NameDetector, corpora: dict[str, list[str]]) -> dict:
    """Findings on the real documents as they are, per corpus and kind, with up to 5 examples each."""
    result = {}
    for corpus, docs in corpora.items():
        counts, examples = Counter(), defaultdict(list)
        for doc in docs:
            for finding in find_personal_data(doc, names):
                counts[finding.kind] += 1
                if len(examples[finding.kind]) < 5:
                    examples[finding.kind].append(finding.text)
        result[corpus] = {"findings": dict(counts), "examples": dict(examples)}
    return result


def detectors(ner_model: str | None) -> dict[str, NameDetector]:
    found: dict[str, NameDetector] = {"cue_rules": CueNames()}
    model = ner_model or DEFAULT_NER_MODEL
    if ner_model_installed(model):
        found["spacy"] = SpacyNames(model)
    elif ner_model:
        raise SystemExit(f"NER model '{ner_model}' is not installed")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeded values per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ner-model", default=None, help=f"spaCy pipeline (default {DEFAULT_NER_MODEL} if installed)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    corpora = real_documents()
    report = {"corpora": {name: {"documents": len(docs), "words": sum(len(d.split()) for d in docs)}
                          for name, docs in corpora.items()},
              "seeds_per_kind": args.seeds, "seed": args.seed, "detectors": {}}
    for label, names in detectors(args.ner_model).items():
        started = time.perf_counter()
        seeded = measure_seeded(names, corpora, args.seeds, args.seed)
        unseeded = measure_unseeded(names, corpora)
        report["detectors"][label] = {"name_detector": names.description, "seconds": round(time.perf_counter() - started, 1),
                                      "seeded": seeded, "unseeded": unseeded}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
