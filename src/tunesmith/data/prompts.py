"""Prompts for reinforcement finetuning: OpenAI's RFT JSONL, one prompt a line with the fields its grader reads.

A row is `{"messages": [...], <any other keys>}`: an optional system message and turns ending with the user turn
the model answers (as a preference pair's prompt, data/preference.py). The whole row is the grader's `item`
(train/graders.py: `{{ item.answer }}` reads the row's "answer"), as at OpenAI. Every row error is collected with
its line, as for chat data.

A file is a prompt file when its first row is a prompt (`is_prompt_file`): its messages end with a user turn, where a
chat row ends with the assistant answer it trains on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.formats import RowError, _decode_lines, _type_name, first_object_row, loads_row
from tunesmith.data.labels import LABEL_KEYS  # a conversation with one of these is a row to classify, not a prompt
from tunesmith.data.preference import _prompt_problems

ROW_EXAMPLE = '{"messages": [{"role": "user", "content": ...}], "answer": ...}'


@dataclass
class PromptRow:
    """One valid row; `line` is 1-based in its file."""

    line: int
    messages: list[dict]  # [{"role", "content"}]: an optional system message, turns, ending with a user turn
    item: dict  # the whole row: what grader templates read as `item`


@dataclass
class LoadedPrompts:
    path: Path
    rows: list[PromptRow]
    errors: list[RowError]
    row_count: int = 0  # non-blank lines, valid or not


def is_prompt_row(row: Any) -> bool:
    """A JSON object whose `messages` list ends with a user turn, and that is not a conversation to classify."""
    messages = row.get("messages") if isinstance(row, dict) else None
    return (isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "user" and not any(key in row for key in LABEL_KEYS))


def is_prompt_file(path: str | Path) -> bool:
    """True when the file's first row that parses as a JSON object is a prompt (`is_prompt_row`)."""
    return is_prompt_row(first_object_row(path))


def load_prompt_rows(path: str | Path) -> LoadedPrompts:
    path = Path(path)
    name = str(path)
    if not path.is_file():
        error = RowError(name, 0, "", "file not found", "check the path (relative paths start at the working directory)")
        return LoadedPrompts(path, [], [error])
    lines, errors = _decode_lines(name, path.read_bytes())
    rows, row_count = [], 0
    for number, text in lines:
        if not text.strip():
            continue
        row_count += 1
        row, problems = _read_row(text)
        errors.extend(RowError(name, number, *problem) for problem in problems)
        if row is not None and not problems:
            rows.append(PromptRow(number, [{"role": m["role"], "content": m["content"]} for m in row["messages"]], row))
    if not rows and not errors:
        errors.append(RowError(name, 0, "", "file is empty", f"add one prompt a line: {ROW_EXAMPLE}"))
    errors.sort(key=lambda error: error.line)
    return LoadedPrompts(path, rows, errors, row_count)


def _read_row(text: str) -> tuple[dict | None, list[tuple[str, str, str]]]:
    try:
        data = loads_row(text)
    except json.JSONDecodeError as error:
        return None, [("", f"invalid JSON: {error.msg} at column {error.colno}",
                        "write one JSON object per line; check quotes, commas and brackets")]
    if not isinstance(data, dict):
        return None, [("", f"row is a JSON {_type_name(data)}, not an object", f"write each row as {ROW_EXAMPLE}")]
    if "messages" not in data:
        hint = ("a reinforcement row is a prompt to answer, not a finished conversation or pair: "
                if {"input", "prompt", "completion"} & data.keys() else "") + f"write each row as {ROW_EXAMPLE}"
        return None, [("messages", "missing", hint)]
    if any(key in data for key in ("tools", "tool_choice")):
        return None, [("tools", "function calling in reinforcement rows is not supported yet",
                       "drop tools, or train calls with supervised rows (README: Function calling)")]
    return data, _prompt_problems("messages", data["messages"])
