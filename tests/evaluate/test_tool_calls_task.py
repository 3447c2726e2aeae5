"""The tool_calls task: its items checked by field, the prompts it sends those serving renders, and the scoring of
calls, arguments and calls made when none was due."""
import json

import pytest

from tunesmith.evaluate import tool_calls
from tunesmith.evaluate.suite import Decoding, SuiteError, ToolCallTask
from tunesmith.evaluate.tasks import run_task
from tunesmith.models.tool_calls import as_plain_messages, call_block, tool_spec

TOOL = {"type": "function", "function": {"name": "lookup_element", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
LOOKED_UP = [{"role": "user", "content": "Symbol of gold?"},
             {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                 "name": "lookup_element", "arguments": '{"query": "gold"}'}}]},
             {"role": "tool", "tool_call_id": "c", "content": '{"symbol": "Au", "atomic_number": 79}'},
             {"role": "assistant", "content": "The chemical symbol for gold is Au."},
             {"role": "user", "content": "And its atomic number?"}]
ITEMS = [
    {"id": "right", "messages": [{"role": "user", "content": "Symbol of gold?"}], "tools": [TOOL],
     "expected": [{"name": "lookup_element", "arguments": {"query": "gold"}}]},
    {"id": "wrong-argument", "messages": [{"role": "user", "content": "Symbol of tin?"}], "tools": [TOOL],
     "expected": [{"name": "lookup_element", "arguments": {"query": "tin"}}]},
    {"id": "no-call-made", "messages": [{"role": "user", "content": "Symbol of iron?"}], "tools": [TOOL],
     "expected": [{"name": "lookup_element", "arguments": {"query": "iron"}}]},
    {"id": "follow-up-answered", "messages": LOOKED_UP, "tools": [TOOL], "expected": []},
    {"id": "follow-up-called", "messages": LOOKED_UP, "tools": [TOOL], "expected": []},
]
ANSWERS = [call_block("lookup_element", {"query": "gold"}), call_block("lookup_element", {"query": "Tin"}),
           "Fe.", "Gold has atomic number 79.", call_block("lookup_element", {"query": "gold"})]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_calls_are_scored_by_name_arguments_and_whether_one_was_due(tmp_path, monkeypatch, model, tokenizer):
    seen = []

    def answers(model, tokenizer, prompts, max_new_tokens, rows, progress):
        seen.extend(prompts)
        return ANSWERS

    monkeypatch.setattr(tool_calls, "generate_answers", answers)
    task = ToolCallTask(kind="tool_calls", name="calls", data=write_jsonl(tmp_path / "calls.jsonl", ITEMS))
    run = run_task(task, model, tokenizer, Decoding(max_new_tokens=40))
    assert [row["correct"] for row in run.rows] == [True, False, False, True, False]
    assert [row["names_right"] for row in run.rows] == [True, True, False, True, False]
    assert run.metrics == pytest.approx({"accuracy": 2 / 5, "name_accuracy": 3 / 5, "call_rate": 2 / 3,
                                         "false_call_rate": 1 / 2})
    assert run.details == {"n": 5, "calls_due": 3}
    assert seen[3] == as_plain_messages(LOOKED_UP, [tool_spec(TOOL["function"])])  # what serving would render


def test_the_task_runs_the_model_through_the_engine(tmp_path, model, tokenizer):
    task = ToolCallTask(kind="tool_calls", name="calls", data=write_jsonl(tmp_path / "calls.jsonl", ITEMS[:2]))
    run = run_task(task, model, tokenizer, Decoding(max_new_tokens=6))
    assert run.metrics["accuracy"] == 0.0 and run.metrics["call_rate"] == 0.0  # the random tiny model calls nothing
    assert [row["id"] for row in run.rows] == ["right", "wrong-argument"] and all(row["due"] for row in run.rows)


@pytest.mark.parametrize("change, says", [
    (lambda item: item.pop("tools"), "tools: missing"),
    (lambda item: item.update(expected=[{"name": "lookup", "arguments": {}}]), "expected"),
    (lambda item: item.update(expected=[{"name": "lookup_element", "arguments": "gold"}]), "expected"),
    (lambda item: item.update(messages=[{"role": "robot", "content": "hi"}]), "messages"),
    (lambda item: item["tools"].append(TOOL), "listed twice"),
])
def test_bad_items_name_the_item_and_field(tmp_path, model, tokenizer, change, says):
    item = json.loads(json.dumps(ITEMS[0]))
    change(item)
    task = ToolCallTask(kind="tool_calls", name="calls", data=write_jsonl(tmp_path / "calls.jsonl", [ITEMS[1], item]))
    with pytest.raises(SuiteError, match=f"item 2: .*{says}"):
        run_task(task, model, tokenizer, Decoding(max_new_tokens=4))
