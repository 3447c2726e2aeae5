"""Load a training data file into records, collecting every row error instead of stopping at the first.

Formats: OpenAI chat JSONL (`{"messages": [...]}`), instruction JSONL (`instruction`, `input`, `output`,
converted to a two-turn chat) and raw text for continued pretraining (a `.txt` file whose documents are
separated by blank lines, or JSONL rows `{"text": ...}`). The majority of valid rows decides a file's
format; rows in another format are errors.
"""
from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = ("role", "content", "weight", "name")  # `name` is accepted (OpenAI allows it) and dropped
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant"}
ROW_KEYS = {
    "chat": ("messages",),
    "instruction": ("instruction", "input", "output"),
    "text": ("text",),
}
REQUIRED_KEYS = {"chat": ("messages",), "instruction": ("instruction", "output"), "text": ("text",)}
Format = Literal["chat", "instruction", "text"]


NESTED_TOO_DEEPLY = "nested too deeply (more levels of [ and { than the parser allows)"


def loads_row(text: str | bytes) -> Any:
    """json.loads for one row; nesting deeper than the parser's recursion limit is a JSONDecodeError like any
    other bad row (it raised RecursionError, which escaped every caller: the server answered 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(NESTED_TOO_DEEPLY, "", 0) from None


@dataclass
class RowError:
    """One problem in one row; `line` is 1-based, 0 for problems with the whole file."""

    file: str
    line: int
    field: str
    message: str
    hint: str  # how to fix it

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}" + (f" — {self.hint}" if self.hint else "")


@dataclass
class Record:
    line: int  # 1-based line number in the file (where the document starts, for .txt files)
    kind: Literal["chat", "text"]
    messages: list[dict] | None  # [{"role", "content"} + optional "weight" (0|1) on assistant turns]
    text: str | None


@dataclass
class LoadedFile:
    path: Path
    kind: Literal["chat", "text"]
    records: list[Record]
    errors: list[RowError]
    format: Format = "chat"  # the row format the file was read as; instruction rows become chat records
    rows: int = 0  # non-blank rows (JSONL) or documents (.txt) seen, valid or not


@dataclass
class _Row:
    line: int
    data: dict[str, Any]
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (field, message, hint)


def load_file(path: str | Path) -> LoadedFile:
    path = Path(path)
    name = str(path)
    if not path.is_file():
        error = RowError(name, 0, "", "file not found", "check the path (relative paths start at the working directory)")
        return LoadedFile(path, "chat", [], [error])
    lines, errors = _decode_lines(name, path.read_bytes())
    if not any(text.strip() for _, text in lines) and not errors:
        errors.append(RowError(name, 0, "", "file is empty", "add at least one training example"))
        return LoadedFile(path, "text" if path.suffix == ".txt" else "chat", [], errors)
    if path.suffix == ".txt":
        records = _text_documents(lines)
        return LoadedFile(path, "text", records, errors, format="text", rows=len(records) + len(errors))
    return _load_jsonl(path, lines, errors)


def _decode_lines(name: str, raw: bytes) -> tuple[list[tuple[int, str]], list[RowError]]:
    """Split into (line number, text) pairs; lines that are not UTF-8 become errors, the rest still load."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    lines, errors = [], []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append((number, chunk.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as error:
            errors.append(RowError(
                name, number, "", f"not valid UTF-8 (byte 0x{chunk[error.start]:02x} at column {error.start + 1})",
                "re-save the file as UTF-8",
            ))
    return lines, errors


def _text_documents(lines: list[tuple[int, str]]) -> list[Record]:
    """Documents are runs of non-blank lines; one or more blank lines separate them."""
    records, current, start = [], [], 0
    for number, text in [*lines, (0, "")]:
        if text.strip():
            start = start or number
            current.append(text)
        elif current:
            records.append(Record(start, "text", None, "\n".join(current)))
            current, start = [], 0
    return records


def _load_jsonl(path: Path, lines: list[tuple[int, str]], errors: list[RowError]) -> LoadedFile:
    name = str(path)
    undecodable = len(errors)
    rows: list[_Row] = []
    for number, text in lines:
        if not text.strip():
            continue
        parsed = _parse_json_row(name, number, text)
        if isinstance(parsed, RowError):
            errors.append(parsed)
        else:
            rows.append(parsed)
    row_format = _majority_format(rows)
    records = []
    for row in rows:
        record = _validate_as(row, row_format)
        errors.extend(RowError(name, row.line, *problem) for problem in row.errors)
        if record is not None and not row.errors:
            records.append(record)
    errors.sort(key=lambda error: error.line)
    kind = "text" if row_format == "text" else "chat"
    non_blank = sum(1 for _, text in lines if text.strip()) + undecodable
    return LoadedFile(path, kind, records, errors, format=row_format, rows=non_blank)


def _parse_json_row(name: str, number: int, text: str) -> _Row | RowError:
    try:
        data = loads_row(text)
    except json.JSONDecodeError as error:
        hint = "write one JSON object per line; check quotes, commas and brackets"
        if number == 1 and text.lstrip().startswith("["):
            hint = "this looks like a JSON array; write one object per line (JSONL) instead"
        return RowError(name, number, "", f"invalid JSON: {error.msg} at column {error.colno}", hint)
    if not isinstance(data, dict):
        return RowError(name, number, "", f"row is a JSON {_type_name(data)}, not an object", 'write each row as {"messages": [...]}')
    return _Row(number, data)


def _guess_format(data: dict) -> Format | None:
    if "messages" in data:
        return "chat"
    if "instruction" in data or "output" in data:
        return "instruction"
    if "text" in data:
        return "text"
    return None


def _majority_format(rows: list[_Row]) -> Format:
    """The format most valid rows follow; if no row is valid, the format most rows look like; else chat."""
    valid, guessed = Counter(), Counter()
    for row in rows:
        guess = _guess_format(row.data)
        if guess is None:
            continue
        guessed[guess] += 1
        if not _row_problems(row.data, guess):
            valid[guess] += 1
    counts = valid or guessed
    if not counts:
        return "chat"
    order = list(ROW_KEYS)
    return max(counts, key=lambda name: (counts[name], -order.index(name)))


def _validate_as(row: _Row, row_format: Format) -> Record | None:
    guess = _guess_format(row.data)
    if guess is not None and guess != row_format:
        row.errors.append(("", f"row is in {guess} format but this file is {row_format}", _format_hint(row_format)))
        return None
    row.errors.extend(_row_problems(row.data, row_format))
    if row.errors:
        return None
    return _to_record(row, row_format)


def _format_hint(row_format: Format) -> str:
    examples = {
        "chat": 'use {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}',
        "instruction": 'use {"instruction": ..., "input": ..., "output": ...}',
        "text": 'use {"text": ...}',
    }
    return f"keep one format per file: {examples[row_format]}"


def _row_problems(data: dict, row_format: Format) -> list[tuple[str, str, str]]:
    problems = _key_problems(data, ROW_KEYS[row_format], REQUIRED_KEYS[row_format], prefix="")
    if row_format == "chat" and "messages" in data:
        problems += _messages_problems(data["messages"])
    elif row_format == "instruction":
        problems += _string_problems(data, "instruction", allow_empty=False)
        problems += _string_problems(data, "input", allow_empty=True)
        problems += _string_problems(data, "output", allow_empty=False)
    elif row_format == "text":
        problems += _string_problems(data, "text", allow_empty=False)
    return problems


def _key_problems(data: dict, allowed: tuple[str, ...], required: tuple[str, ...], prefix: str) -> list[tuple[str, str, str]]:
    """Unknown keys (with the nearest valid key suggested) and missing keys; a typo is reported once."""
    problems, suggested = [], set()
    for key in data:
        if key in allowed:
            continue
        near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'?" if near else f"allowed keys: {', '.join(allowed)}"
        suggested.update(near)
        problems.append((f"{prefix}{key}", f"unknown key '{key}'", hint))
    for key in required:
        if key not in data and key not in suggested:
            problems.append((f"{prefix}{key}", f"missing key '{key}'", f"add '{key}'"))
    return problems


def _string_problems(data: dict, key: str, allow_empty: bool, prefix: str = "") -> list[tuple[str, str, str]]:
    if key not in data:
        return []
    value = data[key]
    if not isinstance(value, str):
        return [(f"{prefix}{key}", f"expected a string, got {_type_name(value)}", f"write {key} as one string")]
    if not allow_empty and not value.strip():
        return [(f"{prefix}{key}", "empty content", f"fill in {key} or remove the row")]
    return []


def _messages_problems(messages: Any) -> list[tuple[str, str, str]]:
    if not isinstance(messages, list):
        return [("messages", f"expected a list of messages, got {_type_name(messages)}", 'write "messages": [{"role": ..., "content": ...}, ...]')]
    problems = []
    for index, message in enumerate(messages):
        problems += _message_problems(index, message)
    problems += _turn_order_problems(messages)
    return problems


def _message_problems(index: int, message: Any) -> list[tuple[str, str, str]]:
    prefix = f"messages[{index}]."
    if not isinstance(message, dict):
        return [(f"messages[{index}]", f"expected an object, got {_type_name(message)}", 'write {"role": ..., "content": ...}')]
    problems = _key_problems(message, MESSAGE_KEYS, ("role", "content"), prefix)
    role = message.get("role")
    if "role" in message and role not in ROLES:
        alias = ROLE_ALIASES.get(str(role).lower()) if isinstance(role, str) else None
        hint = f"use one of {', '.join(ROLES)}" + (f" ('{alias}' here?)" if alias else "")
        problems.append((f"{prefix}role", f"unknown role {role!r}", hint))
    if isinstance(message.get("content"), list):
        problems.append((f"{prefix}content", "expected a string, got list", "join the text parts into one string"))
    else:
        problems += _string_problems(message, "content", allow_empty=False, prefix=prefix)
    if "weight" in message:
        problems += _weight_problems(prefix, role, message["weight"])
    return problems


def _weight_problems(prefix: str, role: Any, weight: Any) -> list[tuple[str, str, str]]:
    if role != "assistant":
        return [(f"{prefix}weight", "weight is only allowed on assistant messages", "remove it")]
    if isinstance(weight, bool) or weight not in (0, 1):
        return [(f"{prefix}weight", f"weight must be 0 or 1, got {weight!r}", "use 1 to train on this turn, 0 to skip it")]
    return []


def _turn_order_problems(messages: list) -> list[tuple[str, str, str]]:
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    problems = []
    for index, role in enumerate(roles):
        if role == "system" and index > 0:
            problems.append((f"messages[{index}].role", "system message is not first", "move it to the start or drop it"))
    first_user = roles.index("user") if "user" in roles else len(roles)
    if "assistant" in roles[:first_user]:
        index = roles.index("assistant")
        problems.append((f"messages[{index}].role", "assistant turn before any user turn", "start with a user message (after an optional system message)"))
    if "assistant" not in roles:
        problems.append(("messages", "no assistant turn", "add the reply to train on as an assistant message"))
    elif all(m.get("weight", 1) == 0 for m in messages if isinstance(m, dict) and m.get("role") == "assistant"):
        problems.append(("messages", "every assistant turn has weight 0, so nothing is trained", "set weight 1 on at least one assistant turn"))
    return problems


def _to_record(row: _Row, row_format: Format) -> Record:
    data = row.data
    if row_format == "text":
        return Record(row.line, "text", None, data["text"])
    if row_format == "instruction":
        prompt = data["instruction"] + (f"\n\n{data['input']}" if data.get("input", "").strip() else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": data["output"]}]
        return Record(row.line, "chat", messages, None)
    messages = [{key: value for key, value in m.items() if key != "name"} for m in data["messages"]]
    return Record(row.line, "chat", messages, None)


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
