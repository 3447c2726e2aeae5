"""`tunesmith data redact IN OUT`: replace personal data in a training file with numbered placeholders.

The same value gets the same placeholder everywhere in a file (`<EMAIL_1>` on line 3 is `<EMAIL_1>` on line
900), so a conversation that names one person twice still reads as one person talking about one person.
Only the text a model trains on changes: message `content` (and the `text` of content parts),
`instruction`/`input`/`output`, `prompt`/`completion`, ShareGPT `value`s, `text` and tool calls' `arguments`; keys, roles and weights
stay, and a JSONL row without findings is written back byte for byte. Any other file is plain text. The report says what was replaced where
(line, field, kind, placeholder), never the data itself.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tunesmith.data.pii import PiiFinding, find_pii
from tunesmith.data.person_names import NameDetector, name_detector

CONTENT_KEYS = ("content", "text", "instruction", "input", "output", "prompt", "completion", "value",  # + ShareGPT turns
                "chosen", "rejected",  # + TRL preference rows
                "arguments")  # + a tool call's arguments (a JSON string: placeholders hold no quote or backslash)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


class RedactionError(ValueError):
    """The file cannot be redacted as a whole (unreadable rows); nothing was written."""


class Redaction(BaseModel):
    line: int  # 1-based line of the file
    field: str  # JSON path of the redacted string (`messages[1].content`); "" for text files
    kind: str
    placeholder: str


class RedactionReport(BaseModel):
    source: str
    output: str
    format: Literal["jsonl", "text"]
    rows: int  # JSONL rows or text paragraphs
    rows_changed: int
    name_detector: str  # which detector looked for person names
    counts: dict[str, int]  # replacements per kind
    distinct: dict[str, int]  # distinct values (so placeholders) per kind
    redactions: list[Redaction]


class Placeholders:
    """One numbered placeholder per distinct value of a kind, for the whole file: `<EMAIL_1>`, `<EMAIL_2>`."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.per_kind: Counter[str] = Counter()

    def __call__(self, finding: PiiFinding) -> str:
        key = (finding.kind, canonical_value(finding.kind, finding.text))
        if key not in self.by_value:
            self.per_kind[finding.kind] += 1
            self.by_value[key] = f"<{finding.kind.upper()}_{self.per_kind[finding.kind]}>"
        return self.by_value[key]


def canonical_value(kind: str, text: str) -> str:
    """The form two spellings of one value share: `(415) 555-2671` and `+1 415 555 2671` are one phone."""
    if kind in ("credit_card", "ssn", "nino", "iban"):
        return re.sub(r"[\s-]", "", text).upper()
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits  # US country code
    if kind == "ipv6":
        return ipaddress.IPv6Address(text).compressed
    return " ".join(text.split()).casefold()  # email, ipv4, street_address, person_name


def find_personal_data(text: str, names: NameDetector) -> list[PiiFinding]:
    """`find_pii`'s checked kinds plus person names; where they overlap the checked finding wins."""
    found = find_pii(text)
    for name in names.find(text):
        if all(name.end <= other.start or other.end <= name.start for other in found):
            found.append(name)
    return sorted(found, key=lambda finding: finding.start)


def redact_text(text: str, names: NameDetector, placeholders: Placeholders) -> tuple[str, list[tuple[PiiFinding, str]]]:
    """The text with every finding replaced, and each finding with its placeholder."""
    replaced, parts, cursor = [], [], 0
    for finding in find_personal_data(text, names):
        placeholder = placeholders(finding)
        parts += [text[cursor:finding.start], placeholder]
        replaced.append((finding, placeholder))
        cursor = finding.end
    return "".join(parts) + text[cursor:], replaced


def redact_file(source: str | Path, output: str | Path, names: NameDetector | None = None) -> RedactionReport:
    """Redact `source` into `output` (written whole or not at all); `.jsonl` files row by row, others as text."""
    source, output = Path(source), Path(output)
    if output.resolve() == source.resolve():
        raise RedactionError(f"{output}: output is the input file — write the redacted copy elsewhere")
    redacted, report = redact_content(source, names)
    _write_atomically(output, redacted)
    return report.model_copy(update={"output": str(output)})


def redact_content(source: Path, names: NameDetector | None = None) -> tuple[str, RedactionReport]:
    """The redacted text of `source` and its report (`output` empty: nothing is written)."""
    names = names or name_detector()
    try:
        content = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RedactionError(f"{source}: cannot read as UTF-8 text ({error}) — re-save it as UTF-8") from error
    placeholders = Placeholders()
    if source.suffix == ".jsonl":
        redacted, redactions, rows, changed = _redact_jsonl(str(source), content, names, placeholders)
        file_format = "jsonl"
    else:
        redacted, redactions, rows, changed = _redact_paragraphs(content, names, placeholders)
        file_format = "text"
    return redacted, RedactionReport(
        source=str(source), output="", format=file_format, rows=rows, rows_changed=changed,
        name_detector=names.description, counts=dict(Counter(r.kind for r in redactions)),
        distinct=dict(placeholders.per_kind), redactions=redactions,
    )


def _redact_jsonl(name: str, content: str, names: NameDetector,
                  placeholders: Placeholders) -> tuple[str, list[Redaction], int, int]:
    lines, redactions, errors, rows, changed = content.split("\n"), [], [], 0, 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        rows += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"{name}:{index + 1}: invalid JSON: {error.msg} at column {error.colno} — "
                          "fix it (tunesmith data check lists every row error) and redact again")
            continue
        if not isinstance(row, dict):
            errors.append(f"{name}:{index + 1}: row is not a JSON object — write each row as "
                          '{"messages": [...]}, {"instruction": ...} or {"text": ...}')
            continue
        found: list[Redaction] = []
        row = _redact_json_value(row, "", index + 1, names, placeholders, found)
        if found:
            lines[index] = json.dumps(row, ensure_ascii=False) + ("\r" if line.endswith("\r") else "")
            redactions += found
            changed += 1
    if errors:
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RedactionError("\n".join(errors[:5]) + more)
    return "\n".join(lines), redactions, rows, changed


def _redact_json_value(value: Any, path: str, line: int, names: NameDetector, placeholders: Placeholders,
                       found: list[Redaction]) -> Any:
    """Walk a row: strings under a content key are redacted; everything else is copied as it is."""
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            field = f"{path}.{key}" if path else key
            if key in CONTENT_KEYS and isinstance(item, str):
                item, replaced = redact_text(item, names, placeholders)
                found += [Redaction(line=line, field=field, kind=f.kind, placeholder=p) for f, p in replaced]
            else:
                item = _redact_json_value(item, field, line, names, placeholders, found)
            redacted[key] = item
        return redacted
    if isinstance(value, list):
        return [_redact_json_value(item, f"{path}[{i}]", line, names, placeholders, found) for i, item in enumerate(value)]
    return value


def _redact_paragraphs(content: str, names: NameDetector,
                       placeholders: Placeholders) -> tuple[str, list[Redaction], int, int]:
    """Paragraph by paragraph, so an address or name broken over two lines is still seen whole."""
    parts, redactions, rows, changed, cursor = [], [], 0, 0, 0
    breaks = [(m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(content)] + [(len(content), len(content))]
    for start, end in breaks:
        paragraph = content[cursor:start]
        first_line = content.count("\n", 0, cursor) + 1
        if paragraph.strip():
            rows += 1
            paragraph, replaced = redact_text(paragraph, names, placeholders)
            changed += bool(replaced)
            redactions += [Redaction(line=first_line + content.count("\n", cursor, cursor + f.start), field="",
                                     kind=f.kind, placeholder=p) for f, p in replaced]
        parts += [paragraph, content[start:end]]
        cursor = end
    return "".join(parts), redactions, rows, changed


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".tmp-{path.name}")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
