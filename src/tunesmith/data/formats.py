"""Load a training data file into records, collecting every row error instead of stopping at the first.

Formats: OpenAI chat JSONL (`{"messages": [...]}`), instruction JSONL (`instruction`, `input`, `output`,
converted to a two-turn chat), prompt-completion JSONL as TRL reads it (`prompt` and `completion`: two strings,
a two-turn chat; or two lists of messages, the prompt's turns untrained), ShareGPT JSONL as Axolotl reads it
(`{"conversations": [{"from": "human" | "gpt" | "system", "value": ...}]}`) and raw text for continued
pretraining (a `.txt` file whose documents are separated by blank lines, or JSONL rows `{"text": ...}`). The
majority of valid rows decides a file's format; rows in another format are errors.
"""
from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith.data import tool_rows
from tunesmith.models.tool_calls import as_plain_messages, tool_spec

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = ("role", "content", "weight", "name")  # `name` is accepted (OpenAI allows it) and dropped
TOOL_MESSAGE_KEYS = MESSAGE_KEYS + ("tool_calls", "tool_call_id")  # chat rows: function calling (data/tool_rows.py)
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
SHAREGPT_KEYS = ("from", "value")
ROW_KEYS = {
    "chat": ("messages", "tools", "parallel_tool_calls"),
    "instruction": ("instruction", "input", "output"),
    "prompt_completion": ("prompt", "completion"),
    "sharegpt": ("conversations",),
    "text": ("text",),
}
REQUIRED_KEYS = {"chat": ("messages",), "instruction": ("instruction", "output"),
                 "prompt_completion": ("prompt", "completion"), "sharegpt": ("conversations",), "text": ("text",)}
Format = Literal["chat", "instruction", "prompt_completion", "sharegpt", "text"]


NESTED_TOO_DEEPLY = "nested too deeply (more levels of [ and { than the parser allows)"


def loads_row(text: str | bytes) -> Any:
    """json.loads for one row; nesting deeper than the parser's recursion limit is a JSONDecodeError like any
    other bad row (it raised RecursionError, which escaped every caller: the server answered 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(NESTED_TOO_DEEPLY, "", 0) from None


def first_object_row(path: str | Path) -> dict | None:
    """The first row that parses as a JSON object, which decides a file's kind; None when there is none (or no file).
    Rows before it that do not parse are skipped: validation reports them."""
    if not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        for line in handle:
            try:
                row = loads_row(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
                continue
            if isinstance(row, dict):
                return row
    return None


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
    if "conversations" in data:
        return "sharegpt"
    if "instruction" in data or "output" in data:
        return "instruction"
    if "prompt" in data or "completion" in data:
        return "prompt_completion"
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
        "prompt_completion": 'use {"prompt": ..., "completion": ...}',
        "sharegpt": 'use {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}',
        "text": 'use {"text": ...}',
    }
    return f"keep one format per file: {examples[row_format]}"


def _row_problems(data: dict, row_format: Format) -> list[tuple[str, str, str]]:
    problems = _key_problems(data, ROW_KEYS[row_format], REQUIRED_KEYS[row_format], prefix="")
    if row_format == "chat":
        problems += tool_rows.tools_problems(data)
    if row_format == "chat" and "messages" in data:
        problems += _messages_problems(data["messages"], tool_rows.tool_names(data))
    elif row_format == "instruction":
        problems += _string_problems(data, "instruction", allow_empty=False)
        problems += _string_problems(data, "input", allow_empty=True)
        problems += _string_problems(data, "output", allow_empty=False)
    elif row_format == "prompt_completion":
        problems += _prompt_completion_problems(data)
    elif row_format == "sharegpt" and "conversations" in data:
        problems += _conversations_problems(data["conversations"])
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


def _messages_problems(messages: Any, tool_names: set[str] | None = None) -> list[tuple[str, str, str]]:
    """A chat row's turns; they may call the row's tools (`tool_names`, None when it lists none) and hold their
    results (data/tool_rows.py)."""
    if not isinstance(messages, list):
        return [("messages", f"expected a list of messages, got {_type_name(messages)}", 'write "messages": [{"role": ..., "content": ...}, ...]')]
    problems = []
    for index, message in enumerate(messages):
        problems += _message_problems(index, message, tools=True, tool_names=tool_names)
    problems += _turn_order_problems(messages)
    problems += tool_rows.tool_turn_problems(messages)
    return problems


def _message_problems(index: int, message: Any, key: str = "messages", tools: bool = False,
                      tool_names: set[str] | None = None) -> list[tuple[str, str, str]]:
    """One turn; with `tools` (chat rows), also `tool` turns and assistant `tool_calls` (then content is optional)."""
    prefix = f"{key}[{index}]."
    if not isinstance(message, dict):
        return [(f"{key}[{index}]", f"expected an object, got {_type_name(message)}", 'write {"role": ..., "content": ...}')]
    role = message.get("role")
    calls = tools and "tool_calls" in message
    problems = _key_problems(message, TOOL_MESSAGE_KEYS if tools else MESSAGE_KEYS,
                             ("role",) if calls else ("role", "content"), prefix)
    if calls:
        problems += tool_rows.tool_calls_problems(prefix, role, message["tool_calls"], tool_names)
        if not message.get("content"):  # a turn that only calls (content null, absent or "")
            return problems + (_weight_problems(prefix, role, message["weight"]) if "weight" in message else [])
    if "role" in message and role not in ROLES and not (tools and role == "tool"):
        alias = ROLE_ALIASES.get(str(role).lower()) if isinstance(role, str) else None
        hint = f"use one of {', '.join(ROLES + (('tool',) if tools else ()))}" + (f" ('{alias}' here?)" if alias else "")
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


def _turn_order_problems(messages: list, roles: list | None = None, fields: list[str] | None = None,
                         key: str = "messages") -> list[tuple[str, str, str]]:
    """System first, a user turn before the first assistant turn, an assistant turn to train on. `roles` and
    `fields` (each turn's role and where it is written) default to the messages' own."""
    roles = roles or [m.get("role") if isinstance(m, dict) else None for m in messages]
    fields = fields or [f"messages[{index}].role" for index in range(len(roles))]
    problems = []
    for index, role in enumerate(roles):
        if role == "system" and index > 0:
            problems.append((fields[index], "system message is not first", "move it to the start or drop it"))
    first_user = roles.index("user") if "user" in roles else len(roles)
    if "assistant" in roles[:first_user]:
        index = roles.index("assistant")
        problems.append((fields[index], "assistant turn before any user turn", "start with a user message (after an optional system message)"))
    if "assistant" not in roles:
        problems.append((key, "no assistant turn", "add the reply to train on as an assistant message"))
    elif all(m.get("weight", 1) == 0 for m, role in zip(messages, roles) if isinstance(m, dict) and role == "assistant"):
        problems.append((key, "every assistant turn has weight 0, so nothing is trained", "set weight 1 on at least one assistant turn"))
    return problems


def _prompt_completion_problems(data: dict) -> list[tuple[str, str, str]]:
    """Two strings (TRL's standard form) or two lists of messages (its conversational form: the prompt's turns,
    then the assistant turns of the completion). A missing key is _key_problems' to report."""
    prompt, completion = data.get("prompt"), data.get("completion")
    if not (isinstance(prompt, list) or isinstance(completion, list)):
        return _string_problems(data, "prompt", allow_empty=False) + _string_problems(data, "completion", allow_empty=False)
    if not ("prompt" in data and "completion" in data):
        return []
    if not (isinstance(prompt, list) and isinstance(completion, list)):
        return [("completion" if isinstance(prompt, list) else "prompt", "prompt and completion differ in form",
                 "write both as strings, or both as lists of messages")]
    return _conversational_problems(prompt, completion)


def _conversational_problems(prompt: list, completion: list) -> list[tuple[str, str, str]]:
    problems = [problem for index, message in enumerate(prompt) for problem in _message_problems(index, message, "prompt")]
    problems += [problem for index, message in enumerate(completion)
                 for problem in _message_problems(index, message, "completion")]
    problems += [(f"prompt[{index}].weight", "the prompt is never trained", "move the turn into completion, or drop weight")
                 for index, message in enumerate(prompt) if isinstance(message, dict) and "weight" in message]
    problems += [(f"completion[{index}].role", f"completion turns are the assistant's, got {message.get('role')!r}",
                  "move the turn into prompt") for index, message in enumerate(completion)
                 if isinstance(message, dict) and message.get("role") not in ("assistant", None)]
    if not completion:
        problems.append(("completion", "no assistant turn", "add the reply to train on as an assistant message"))
    if problems:
        return problems
    fields = [f"prompt[{i}].role" for i in range(len(prompt))] + [f"completion[{i}].role" for i in range(len(completion))]
    return _turn_order_problems(_as_context(prompt) + completion, fields=fields, key="completion")


def _as_context(prompt: list[dict]) -> list[dict]:
    """A conversational prompt's turns as they are trained: its assistant turns are context (weight 0), not targets."""
    return [m | {"weight": 0} if m["role"] == "assistant" else m for m in prompt]


def _conversations_problems(conversations: Any) -> list[tuple[str, str, str]]:
    """ShareGPT turns: {"from": human | gpt | system, "value": text}."""
    if not isinstance(conversations, list):
        return [("conversations", f"expected a list of turns, got {_type_name(conversations)}",
                 'write "conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]')]
    problems = []
    for index, turn in enumerate(conversations):
        prefix = f"conversations[{index}]."
        if not isinstance(turn, dict):
            problems.append((f"conversations[{index}]", f"expected an object, got {_type_name(turn)}",
                             'write {"from": ..., "value": ...}'))
            continue
        problems += _key_problems(turn, SHAREGPT_KEYS, SHAREGPT_KEYS, prefix)
        if "from" in turn and turn["from"] not in SHAREGPT_ROLES:
            problems.append((f"{prefix}from", f"unknown speaker {turn['from']!r}", "use one of human, gpt, system"))
        problems += _string_problems(turn, "value", allow_empty=False, prefix=prefix)
    if not problems:
        roles = [SHAREGPT_ROLES[turn["from"]] for turn in conversations]
        problems += _turn_order_problems(conversations, roles, [f"conversations[{i}].from" for i in range(len(roles))],
                                         key="conversations")
    return problems


def _to_record(row: _Row, row_format: Format) -> Record:
    data = row.data
    if row_format == "text":
        return Record(row.line, "text", None, data["text"])
    if row_format == "instruction":
        prompt = data["instruction"] + (f"\n\n{data['input']}" if data.get("input", "").strip() else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": data["output"]}]
        return Record(row.line, "chat", messages, None)
    if row_format == "prompt_completion":
        if isinstance(data["prompt"], str):
            messages = [{"role": "user", "content": data["prompt"]}, {"role": "assistant", "content": data["completion"]}]
        else:
            messages = [{key: value for key, value in m.items() if key != "name"}
                        for m in _as_context(data["prompt"]) + data["completion"]]
        return Record(row.line, "chat", messages, None)
    if row_format == "sharegpt":
        messages = [{"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]} for turn in data["conversations"]]
        return Record(row.line, "chat", messages, None)
    messages = [{key: value for key, value in m.items() if key != "name"} for m in data["messages"]]
    if "tools" in data or any("tool_calls" in m or m["role"] == "tool" for m in messages):
        # function calling as the text serving reads and writes (models/tool_calls.py)
        messages = as_plain_messages(messages, [tool_spec(tool["function"]) for tool in data.get("tools") or []])
    return Record(row.line, "chat", messages, None)


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
