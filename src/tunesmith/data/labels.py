"""Read classification data: one text (or chat) per JSONL row with its label or labels.

Row formats, one per file:
- `{"text": ..., "label": "spam"}`: single-label, exactly one class per row;
- `{"text": ..., "labels": ["hate", "violence"]}`: multi-label; `[]` means none applies (for a moderation
  set: harmless);
- either with `"messages": [{"role", "content"}, ...]` instead of `"text"`: a conversation to classify.

Every problem becomes a `formats.RowError` with its line number, collected rather than raised, so one run
shows them all: unknown labels against a declared label set (with the nearest one suggested), wrong
types, empty text, unknown keys. `class_balance` counts rows per label for the report.
"""
from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from tunesmith.data.formats import ROLES, RowError, first_object_row, loads_row

# OpenAI's moderation categories, the label set of a moderation model (a team's own set maps onto these).
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)

LABEL_KEYS = ("label", "labels")  # a row with one of these is a labelled text: a file of them trains a classifier
ROW_KEYS = ("text", "messages", *LABEL_KEYS)
MESSAGE_KEYS = ("role", "content", "name")  # `name` is accepted (OpenAI allows it) and dropped
LabelMode = Literal["single", "multi"]


def is_classification_file(path: str | Path) -> bool:
    """True when the file's first row that parses as a JSON object has `label` or `labels` (a bad row before it is
    skipped: validation reports it)."""
    row = first_object_row(path)
    return row is not None and any(key in row for key in LABEL_KEYS)


@dataclass
class LabeledRecord:
    line: int  # 1-based line in the file
    labels: tuple[str, ...]  # one label for a single-label file; zero or more for a multi-label one
    text: str | None = None  # a text row
    messages: list[dict] | None = None  # a chat row: [{"role", "content"}]


@dataclass
class LabeledFile:
    path: Path
    mode: LabelMode  # "single" (`label`) or "multi" (`labels`); rows in the other form are errors
    records: list[LabeledRecord]
    errors: list[RowError]
    rows: int = 0  # non-blank rows seen, valid or not


@dataclass
class ClassBalance:
    """Rows per label. In a multi-label file a row counts once for each of its labels."""

    rows: int
    counts: dict[str, int]  # every declared label (or every label seen) -> rows carrying it
    unlabelled: int = 0  # multi-label rows with `[]`
    missing: list[str] = field(default_factory=list)  # declared labels no row carries

    @property
    def imbalance(self) -> float:
        """Largest over smallest non-zero count (1.0 is balanced); `unlabelled` counts as a class."""
        sizes = [n for n in [*self.counts.values(), self.unlabelled] if n]
        return max(sizes) / min(sizes) if sizes else 1.0


def load_labeled_file(path: str | Path, label_set: Sequence[str] | None = None) -> LabeledFile:
    """Read and validate a classification file; with `label_set`, any other label is an error."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        error = RowError(name, 0, "", "file not found", "check the path (relative paths start at the working directory)")
        return LabeledFile(path, "single", [], [error])
    errors: list[RowError] = []
    rows: list[tuple[int, dict]] = []
    for number, text in _lines(path.read_bytes(), name, errors):
        parsed = _parse(name, number, text)
        if isinstance(parsed, RowError):
            errors.append(parsed)
        else:
            rows.append((number, parsed))
    non_blank = len(rows) + len(errors)
    if not non_blank:
        errors.append(RowError(name, 0, "", "file is empty", 'add rows like {"text": ..., "label": ...}'))
    mode = _majority_mode(row for _, row in rows)
    records = []
    for number, row in rows:
        problems = _row_problems(row, mode, label_set)
        errors += [RowError(name, number, *problem) for problem in problems]
        if not problems:
            records.append(_to_record(number, row, mode))
    errors.sort(key=lambda error: error.line)
    return LabeledFile(path, mode, records, errors, rows=non_blank)


def class_balance(records: Sequence[LabeledRecord], label_set: Sequence[str] | None = None) -> ClassBalance:
    counts = Counter(label for record in records for label in record.labels)
    names = list(label_set) if label_set is not None else sorted(counts)
    return ClassBalance(
        rows=len(records),
        counts={label: counts[label] for label in names},
        unlabelled=sum(1 for record in records if not record.labels),
        missing=[label for label in names if not counts[label]],
    )


def _lines(raw: bytes, name: str, errors: list[RowError]) -> list[tuple[int, str]]:
    """Non-blank (line number, text) pairs; a line that is not UTF-8 becomes an error, the rest still load."""
    lines = []
    for number, chunk in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as error:
            errors.append(RowError(name, number, "", f"not valid UTF-8 (byte 0x{chunk[error.start]:02x} at column {error.start + 1})",
                                   "re-save the file as UTF-8"))
            continue
        if text.strip():
            lines.append((number, text))
    return lines


def _parse(name: str, number: int, text: str) -> dict | RowError:
    try:
        data = loads_row(text)
    except json.JSONDecodeError as error:
        return RowError(name, number, "", f"invalid JSON: {error.msg} at column {error.colno}",
                        "write one JSON object per line; check quotes, commas and brackets")
    if not isinstance(data, dict):
        return RowError(name, number, "", f"row is a JSON {_type_name(data)}, not an object",
                        'write each row as {"text": ..., "label": ...}')
    return data


def _majority_mode(rows: Any) -> LabelMode:
    """The form most rows use; a tie or no labelled row reads as single-label."""
    modes = Counter("multi" if "labels" in row else "single" for row in rows if ("label" in row) != ("labels" in row))
    return "multi" if modes["multi"] > modes["single"] else "single"


def _row_problems(row: dict, mode: LabelMode, label_set: Sequence[str] | None) -> list[tuple[str, str, str]]:
    problems, suggested = _key_problems(row, ROW_KEYS, prefix="")
    problems += _content_problems(row, suggested)
    problems += _label_key_problems(row, mode, suggested)
    if "label" in row and mode == "single":
        problems += _label_problems("label", row["label"], label_set)
    if "labels" in row and mode == "multi":
        problems += _labels_problems(row["labels"], label_set)
    return problems


def _key_problems(data: dict, allowed: tuple[str, ...], prefix: str) -> tuple[list[tuple[str, str, str]], set[str]]:
    """Unknown keys with the nearest allowed key suggested, and the keys suggested (a typo of `label` must
    not also be reported as a missing `label`)."""
    problems, suggested = [], set()
    for key in data:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'?" if near else f"allowed keys: {', '.join(allowed)}"
            suggested.update(near)
            problems.append((f"{prefix}{key}", f"unknown key '{key}'", hint))
    return problems, suggested


def _content_problems(row: dict, suggested: set[str]) -> list[tuple[str, str, str]]:
    """Exactly one of text / messages, each well formed; a key already suggested for a typo is not "missing"."""
    if "text" in row and "messages" in row:
        return [("messages", "row has both text and messages", "keep one: the text, or the conversation to classify")]
    if "text" in row:
        return _string_problems(row["text"], "text")
    if "messages" in row:
        return _messages_problems(row["messages"])
    if suggested & {"text", "messages"}:
        return []
    return [("text", "missing key 'text'", "add the text to classify (or \"messages\" for a conversation)")]


def _string_problems(value: Any, field_name: str) -> list[tuple[str, str, str]]:
    if not isinstance(value, str):
        return [(field_name, f"expected a string, got {_type_name(value)}", f"write {field_name.split('.')[-1]} as one string")]
    if not value.strip():
        return [(field_name, "empty text", "fill it in or remove the row")]
    return []


def _messages_problems(messages: Any) -> list[tuple[str, str, str]]:
    if not isinstance(messages, list) or not messages:
        got = "an empty list" if isinstance(messages, list) else _type_name(messages)
        return [("messages", f"expected a list of messages, got {got}", 'write "messages": [{"role": ..., "content": ...}, ...]')]
    problems = []
    for index, message in enumerate(messages):
        prefix = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append((prefix, f"expected an object, got {_type_name(message)}", 'write {"role": ..., "content": ...}'))
            continue
        problems += _key_problems(message, MESSAGE_KEYS, prefix=f"{prefix}.")[0]
        if message.get("role") not in ROLES:
            problems.append((f"{prefix}.role", f"unknown role {message.get('role')!r}", f"use one of {', '.join(ROLES)}"))
        problems += _string_problems(message.get("content"), f"{prefix}.content")
    return problems


def _label_key_problems(row: dict, mode: LabelMode, suggested: set[str]) -> list[tuple[str, str, str]]:
    if "label" in row and "labels" in row:
        return [("labels", "row has both label and labels", 'keep "labels": [...] (multi-label) or "label": "..." (one class)')]
    if "label" not in row and "labels" not in row:
        if suggested & {"label", "labels"}:
            return []
        key = "labels" if mode == "multi" else "label"
        example = '"labels": [...]' if mode == "multi" else '"label": "..."'
        return [(key, f"missing key '{key}'", f"add {example}")]
    if mode == "multi" and "label" in row:
        return [("label", "single-label row in a multi-label file", f'write "labels": [{json.dumps(row["label"])}]')]
    if mode == "single" and "labels" in row:
        return [("labels", "multi-label row in a single-label file",
                 'write "label": "..." with one class, or use "labels" on every row of the file')]
    return []


def _label_problems(field_name: str, label: Any, label_set: Sequence[str] | None) -> list[tuple[str, str, str]]:
    if not isinstance(label, str):
        hint = 'use "labels": [...] for several labels' if isinstance(label, list) else "write the label as a string"
        return [(field_name, f"expected a string, got {_type_name(label)}", hint)]
    if not label.strip():
        return [(field_name, "empty label", "name the class")]
    if label_set is not None and label not in label_set:
        near = difflib.get_close_matches(label, label_set, n=1, cutoff=0.6)
        declared = f"declared labels: {', '.join(label_set)}"
        return [(field_name, f"unknown label '{label}'", f"did you mean '{near[0]}'? {declared}" if near else declared)]
    return []


def _labels_problems(labels: Any, label_set: Sequence[str] | None) -> list[tuple[str, str, str]]:
    if not isinstance(labels, list):
        return [("labels", f"expected a list of strings, got {_type_name(labels)}",
                 'write "labels": ["..."] ([] when none applies)')]
    problems = []
    for index, label in enumerate(labels):
        problems += _label_problems(f"labels[{index}]", label, label_set)
    repeated = sorted(label for label, n in Counter(l for l in labels if isinstance(l, str)).items() if n > 1)
    problems += [("labels", f"label '{label}' listed twice", "list each label once") for label in repeated]
    return problems


def _to_record(number: int, row: dict, mode: LabelMode) -> LabeledRecord:
    labels = tuple(row["labels"]) if mode == "multi" else (row["label"],)
    if "messages" in row:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        return LabeledRecord(number, labels, messages=messages)
    return LabeledRecord(number, labels, text=row["text"])


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
