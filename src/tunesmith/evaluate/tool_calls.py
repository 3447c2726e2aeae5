"""Function-calling accuracy: does the model call the right tool with the right arguments, and only when one is due?

Each item is a conversation and the tools offered, as OpenAI's API takes them, with the calls its next turn should
make (`expected`, [] when the model should answer without calling). The model answers greedily through the serving
engine, from the prompt `tunesmith serve` renders for that request with tool_choice "auto" (models/tool_calls.py),
and its answer is parsed as the server parses it. Metrics:

- accuracy: the answer is exactly what was due: the expected calls (names and argument objects, in order), or no
  call when none was;
- name_accuracy: the same functions in the same order (arguments aside), or no call when none was due;
- call_rate: of the items that expect calls, the share whose answer is calls at all (the format learned);
- false_call_rate: of the items that expect none, the share whose answer calls anyway.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from tunesmith.data import tool_rows
from tunesmith.evaluate.suite import SuiteError
from tunesmith.models.generate import generate_answers
from tunesmith.models.tool_calls import as_plain_messages, parse_answer, tool_spec

ROLES = ("system", "user", "assistant", "tool")


def check_items(path: Path, items: list[dict]) -> None:
    """Each item's messages, tools and expected calls, or a SuiteError naming the item and field."""
    for number, item in enumerate(items, start=1):
        where = f"{path}: item {number}"
        messages, expected = item.get("messages"), item.get("expected")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ROLES for m in messages):
            raise SuiteError(f"{where}: messages: expected a list of turns with roles {', '.join(ROLES)}")
        problems = tool_rows.tools_problems(item)
        if not isinstance(item.get("tools"), list) or not item["tools"]:
            problems.append(("tools", "missing", "list the tools the model is offered"))
        if problems:
            field, message, hint = problems[0]
            raise SuiteError(f"{where}: {field}: {message} — {hint}")
        names = tool_rows.tool_names(item) or set()
        if not isinstance(expected, list) or not all(
                isinstance(call, dict) and call.get("name") in names and isinstance(call.get("arguments"), dict)
                for call in expected):
            raise SuiteError(f"{where}: expected: write a list of {{\"name\": one of {sorted(names)}, \"arguments\": "
                             "{...}}, or [] when no call is due")


def tool_call_rows(items: list[dict], model, tokenizer, max_new_tokens: int, rows: int, system: str | None,
                   progress: bool) -> list[dict]:
    prompts = []
    for item in items:
        messages = item["messages"]
        if system is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}] + messages
        prompts.append(as_plain_messages(messages, [tool_spec(tool["function"]) for tool in item["tools"]]))
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, rows, progress)
    found = []
    for i, (item, answer) in enumerate(zip(items, answers)):
        _, calls = parse_answer(answer)
        made = [(call.name, json.loads(call.arguments)) for call in calls]
        due = [(call["name"], call["arguments"]) for call in item["expected"]]
        found.append({"id": item.get("id", i), "prompt": item["messages"][-1].get("content") or "",
                      "reference": json.dumps(item["expected"]), "prediction": answer, "due": bool(due),
                      "called": bool(made), "correct": made == due,
                      "names_right": [name for name, _ in made] == [name for name, _ in due]})
    return found


def tool_call_metrics(rows: list[dict]) -> dict[str, float]:
    due = [row for row in rows if row["due"]]
    not_due = [row for row in rows if not row["due"]]
    return {"accuracy": statistics.fmean(row["correct"] for row in rows) if rows else 0.0,
            "name_accuracy": statistics.fmean(row["names_right"] for row in rows) if rows else 0.0,
            "call_rate": statistics.fmean(row["called"] for row in due) if due else 0.0,
            "false_call_rate": statistics.fmean(row["called"] for row in not_due) if not_due else 0.0}
