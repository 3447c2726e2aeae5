"""Preference data for DPO: one prompt, the answer the brand prefers and one it does not.

Formats, one pair a line: OpenAI's preference JSONL (`{"input": {"messages": [...]}, "preferred_output":
[{"role": "assistant", ...}], "non_preferred_output": [...]}`) and TRL's `prompt`/`chosen`/`rejected`
(each a string or a message list), converted to the OpenAI shape. As with chat data, every row error is
collected with its line, the majority of rows decides a file's format, and rows in the other one are errors.

Rendering gives each pair two examples with the base model's chat template, prompt + preferred answer and
prompt + non-preferred answer; only the answer through its end-of-turn token is trained in each.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

# One row reader for every data kind: its private checks are reused so errors read the same everywhere.
from tunesmith.data.formats import RowError, _decode_lines, _key_problems, loads_row, _message_problems, _string_problems, _type_name
from tunesmith.data.render import IGNORE_INDEX, TokenizedExample, render_chat

PreferenceFormat = Literal["openai", "trl"]
ROW_KEYS: dict[PreferenceFormat, tuple[str, str, str]] = {
    "openai": ("input", "preferred_output", "non_preferred_output"),
    "trl": ("prompt", "chosen", "rejected"),
}
ROW_EXAMPLE = {
    "openai": '{"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", ...}], "non_preferred_output": [...]}',
    "trl": '{"prompt": ..., "chosen": ..., "rejected": ...}',
}
Problem = tuple[str, str, str]  # (field, message, hint), as in formats.py


@dataclass
class PreferencePair:
    """One valid row; `line` is 1-based in its file."""

    line: int
    prompt: list[dict]  # [{"role", "content"}]: an optional system message, turns, ending with a user turn
    chosen: str  # the preferred assistant answer
    rejected: str  # the non-preferred assistant answer

    def conversation(self, answer: str) -> list[dict]:
        """The prompt followed by `answer`; earlier assistant turns get weight 0, so only `answer` is trained."""
        turns = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in self.prompt]
        return [*turns, {"role": "assistant", "content": answer}]

    def openai_row(self) -> dict:
        """The pair in OpenAI's preference format (what TRL rows are converted to)."""
        return {
            "input": {"messages": self.prompt},
            "preferred_output": [{"role": "assistant", "content": self.chosen}],
            "non_preferred_output": [{"role": "assistant", "content": self.rejected}],
        }


@dataclass
class LoadedPreferences:
    path: Path
    pairs: list[PreferencePair]
    errors: list[RowError]
    format: PreferenceFormat
    rows: int  # non-blank lines seen, valid or not


def load_preferences(path: str | Path) -> LoadedPreferences:
    path = Path(path)
    name = str(path)
    if not path.is_file():
        error = RowError(name, 0, "", "file not found", "check the path (relative paths start at the working directory)")
        return LoadedPreferences(path, [], [error], "openai", 0)
    lines, errors = _decode_lines(name, path.read_bytes())
    undecodable = len(errors)
    rows = [(number, text) for number, text in lines if text.strip()]
    if not rows and not errors:
        errors.append(RowError(name, 0, "", "file is empty", "add at least one preference pair"))
    parsed = []
    for number, text in rows:
        data = _parse_row(text)
        if isinstance(data, tuple):
            errors.append(RowError(name, number, *data))
        else:
            parsed.append((number, data))
    row_format = _majority_format([data for _, data in parsed])
    pairs = []
    for number, data in parsed:
        pair, problems = _read_row(number, data, row_format)
        errors.extend(RowError(name, number, *problem) for problem in problems)
        if pair is not None:
            pairs.append(pair)
    errors.sort(key=lambda error: error.line)
    return LoadedPreferences(path, pairs, errors, row_format, len(rows) + undecodable)


def _parse_row(text: str) -> dict | Problem:
    try:
        data = loads_row(text)
    except json.JSONDecodeError as error:
        return ("", f"invalid JSON: {error.msg} at column {error.colno}", "write one JSON object per line; check quotes, commas and brackets")
    if not isinstance(data, dict):
        return ("", f"row is a JSON {_type_name(data)}, not an object", f"write each row as {ROW_EXAMPLE['openai']}")
    return data


def _guess_format(data: dict) -> PreferenceFormat | None:
    for row_format, keys in ROW_KEYS.items():
        if any(key in data for key in keys):
            return row_format
    return None


def _majority_format(rows: list[dict]) -> PreferenceFormat:
    """The format most rows look like; OpenAI's on a tie or when no row looks like either."""
    counts = Counter(guess for guess in map(_guess_format, rows) if guess is not None)
    return "trl" if counts["trl"] > counts["openai"] else "openai"


def _read_row(line: int, data: dict, row_format: PreferenceFormat) -> tuple[PreferencePair | None, list[Problem]]:
    guess = _guess_format(data)
    if guess is None:
        return None, [("", "not a preference pair", f"write {ROW_EXAMPLE[row_format]}")]
    if guess != row_format:
        return None, [("", f"row is in {guess} format but this file is {row_format}", f"keep one format per file: {ROW_EXAMPLE[row_format]}")]
    prompt_key, chosen_key, rejected_key = ROW_KEYS[row_format]
    problems = _key_problems(data, ROW_KEYS[row_format], ROW_KEYS[row_format], prefix="")
    if prompt_key in data:
        problems += _input_problems(data[prompt_key]) if row_format == "openai" else _trl_prompt_problems(data[prompt_key])
    for key in (chosen_key, rejected_key):
        if key in data:
            problems += _answer_problems(key, data[key], allow_string=row_format == "trl")
    if problems:
        return None, problems
    prompt = data["input"]["messages"] if row_format == "openai" else data["prompt"]
    chosen, rejected = _answer_text(data[chosen_key]), _answer_text(data[rejected_key])
    if chosen.strip() == rejected.strip():
        field = rejected_key if isinstance(data[rejected_key], str) else f"{rejected_key}[0].content"
        return None, [(field, f"identical to {chosen_key}", "a pair must differ: write the answer the brand would not give, or drop the row")]
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [_plain(m) for m in prompt]
    return PreferencePair(line, messages, chosen, rejected), []


def _input_problems(value: Any) -> list[Problem]:
    if not isinstance(value, dict):
        return [("input", f"expected an object, got {_type_name(value)}", 'write "input": {"messages": [...]}')]
    problems = _key_problems(value, ("messages",), ("messages",), prefix="input.")
    if "messages" in value:
        problems += _prompt_problems("input.messages", value["messages"])
    return problems


def _trl_prompt_problems(value: Any) -> list[Problem]:
    if isinstance(value, str):
        return _string_problems({"prompt": value}, "prompt", allow_empty=False)
    return _prompt_problems("prompt", value)


def _prompt_problems(field: str, messages: Any) -> list[Problem]:
    """The conversation before the answer: messages as in chat data, ending with the user turn answered."""
    if not isinstance(messages, list):
        return [(field, f"expected a list of messages, got {_type_name(messages)}", f'write "{field}": [{{"role": "user", "content": ...}}]')]
    if not messages:
        return [(field, "no messages", "add the user message the answers reply to")]
    problems = []
    for index, message in enumerate(messages):
        problems += _renamed(_message_problems(index, message), f"{field}[{index}]")
        problems += _weight_problems(f"{field}[{index}]", message)
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    for index, role in enumerate(roles):
        if role == "system" and index > 0:
            problems.append((f"{field}[{index}].role", "system message is not first", "move it to the start or drop it"))
    first_user = roles.index("user") if "user" in roles else len(roles)
    if "assistant" in roles[:first_user]:
        problems.append((f"{field}[{roles.index('assistant')}].role", "assistant turn before any user turn", "start with a user message (after an optional system message)"))
    if isinstance(roles[-1], str) and roles[-1] != "user":
        problems.append((f"{field}[{len(roles) - 1}].role", f"the prompt's last message has role {roles[-1]!r}", "end the prompt with the user message the answers reply to"))
    return problems


def _answer_problems(field: str, value: Any, allow_string: bool) -> list[Problem]:
    """One assistant message (or, in TRL rows, one string): the answer that follows the prompt."""
    if allow_string and isinstance(value, str):
        return _string_problems({field: value}, field, allow_empty=False)
    shape = f'write "{field}": [{{"role": "assistant", "content": ...}}]'
    if not isinstance(value, list):
        return [(field, f"expected a list with one assistant message, got {_type_name(value)}", shape)]
    if len(value) != 1:
        got = "no message" if not value else f"{len(value)} messages"
        return [(field, f"{got}; expected exactly one assistant message", f"keep only the final answer (earlier turns belong in the prompt): {shape}")]
    message = value[0]
    problems = _renamed(_message_problems(0, message), f"{field}[0]") + _weight_problems(f"{field}[0]", message)
    role = message.get("role") if isinstance(message, dict) else None
    if role in ("system", "user"):
        problems.append((f"{field}[0].role", f"role {role!r}; the answer must be an assistant message", 'use "role": "assistant"'))
    return problems


def _weight_problems(field: str, message: Any) -> list[Problem]:
    if isinstance(message, dict) and "weight" in message:
        return [(f"{field}.weight", "weight has no meaning in preference data (the answer is always trained, the prompt never)", "remove it")]
    return []


def _renamed(problems: list[Problem], field: str) -> list[Problem]:
    """formats.py names a message `messages[i]`; here it lives at `field` (e.g. `input.messages[2]`)."""
    return [(name.replace(name.split(".")[0], field, 1), message, hint) for name, message, hint in problems]


def _answer_text(value: str | list[dict]) -> str:
    return value if isinstance(value, str) else value[0]["content"]


def _plain(message: dict) -> dict:
    return {"role": message["role"], "content": message["content"]}


@dataclass
class RenderedPair:
    """The two training examples of a pair; both start with the same prompt tokens."""

    chosen: TokenizedExample  # prompt + preferred answer; the answer and its end-of-turn token are trained
    rejected: TokenizedExample  # prompt + non-preferred answer, masked the same way


def render_pair(tokenizer: PreTrainedTokenizerBase, pair: PreferencePair, max_length: int) -> RenderedPair:
    """Render with the base model's chat template; each side is truncated to `max_length` on its own.

    A prompt that fills `max_length` leaves a side with no trained token; callers drop such pairs.
    """
    return RenderedPair(
        render_chat(tokenizer, pair.conversation(pair.chosen), max_length),
        render_chat(tokenizer, pair.conversation(pair.rejected), max_length),
    )


@dataclass
class PairLengths:
    """Token counts of one pair before truncation, for the data check's statistics."""

    prompt: int  # tokens before the answer, chat template included
    chosen: int  # trained tokens of the preferred answer (content through the end-of-turn token)
    rejected: int  # trained tokens of the non-preferred answer

    @property
    def longest(self) -> int:
        """The longer rendered side: what `max_length` must hold for the pair not to be truncated."""
        return self.prompt + max(self.chosen, self.rejected)


def pair_token_lengths(tokenizer: PreTrainedTokenizerBase, pair: PreferencePair) -> PairLengths:
    rendered = render_pair(tokenizer, pair, max_length=sys.maxsize)  # lengths as written, untruncated
    labels = rendered.chosen.labels
    prompt = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    return PairLengths(prompt, _trained(rendered.chosen), _trained(rendered.rejected))


def _trained(example: TokenizedExample) -> int:
    return sum(label != IGNORE_INDEX for label in example.labels)
