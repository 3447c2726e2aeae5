"""Function-calling rows (OpenAI's fine-tuning format): checked by line and field, trained on exactly the text the
served model must write after the prompt serving renders."""
import json

import pytest

from tests.data.test_formats import write_jsonl
from tunesmith.data.formats import load_file
from tunesmith.data.render import IGNORE_INDEX, render_chat
from tunesmith.models.chat import render_prompts
from tunesmith.models.tool_calls import as_plain_messages, call_block, parse_answer, tool_spec

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
ROW = {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "3 C, snow"},
                    {"role": "assistant", "content": "It is 3 C and snowing in Oslo."}],
       "tools": TOOLS, "parallel_tool_calls": False}


def test_a_calling_row_trains_the_call_and_the_answer_not_the_tool_result(tmp_path, tokenizer):
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [ROW]))
    assert loaded.errors == [] and loaded.format == "chat"
    for content in ("", None):  # a calling turn's content may be empty or null, as OpenAI writes it
        row = json.loads(json.dumps(ROW))
        row["messages"][1]["content"] = content
        assert load_file(write_jsonl(tmp_path / "empty.jsonl", [row])).errors == []
    (record,) = loaded.records
    assert record.messages == as_plain_messages(ROW["messages"], [tool_spec(TOOLS[0]["function"])])
    example = render_chat(tokenizer, record.messages, max_length=4096)
    trained = [token for token, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    text = tokenizer.decode(trained)
    assert call_block("get_weather", {"city": "Oslo"}) in text and "It is 3 C and snowing in Oslo." in text
    assert "3 C, snow" not in text and "get_weather" not in text.split("<tool_call>")[0]


def test_the_trained_call_follows_the_prompt_serving_renders_and_parses_back(tmp_path, tokenizer):
    (record,) = load_file(write_jsonl(tmp_path / "train.jsonl", [ROW])).records
    example = render_chat(tokenizer, record.messages[:3], max_length=4096)  # system (tools), user, the call
    prompt = render_prompts(tokenizer, [as_plain_messages(ROW["messages"][:1], TOOLS)])[0]  # what serve sends
    assert example.input_ids[: len(prompt)] == prompt
    first_trained = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    assert first_trained == len(prompt)  # the model learns to write what follows serving's prompt
    answer = tokenizer.decode(example.input_ids[first_trained:], skip_special_tokens=True)
    content, calls = parse_answer(answer.strip())
    assert content is None and [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]


def broken(change):
    row = json.loads(json.dumps(ROW))
    change(row)
    return row


@pytest.mark.parametrize(("row", "field", "message"), [
    (broken(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(name="get_wether")),
     "messages[1].tool_calls[0].function.name", "not in the row's tools"),
    (broken(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments="{city: Oslo}")),
     "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    (broken(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments='["Oslo"]')),
     "messages[1].tool_calls[0].function.arguments", "expected a JSON object"),
    (broken(lambda r: r.pop("tools")), "messages[1].tool_calls[0].function.name", "the row lists no tools"),
    (broken(lambda r: r["messages"][0].update(tool_calls=[CALL])), "messages[0].tool_calls", "only assistant turns"),
    (broken(lambda r: r["messages"].pop(1)), "messages[1].role", "tool turn without a call before it"),
    (broken(lambda r: r["tools"].append(TOOLS[0])), "tools[1].function.name", "listed twice"),
    (broken(lambda r: r["tools"][0]["function"].update(name="get weather")), "tools[0].function.name",
     "invalid function name"),
    (broken(lambda r: r.update(parallel_tool_calls="no")), "parallel_tool_calls", "expected true or false"),
    (broken(lambda r: r["messages"][1].update(tool_calls=[])), "messages[1].tool_calls", "non-empty list"),
])
def test_bad_calling_rows_are_named_by_line_and_field(tmp_path, row, field, message):
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [ROW, row]))
    assert len(loaded.records) == 1
    assert any(e.line == 2 and e.field == field and message in e.message and e.hint for e in loaded.errors), loaded.errors


def test_tool_keys_stay_chat_only(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Weather?"}],
           "completion": [{"role": "assistant", "tool_calls": [CALL]}]}
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [row]))
    assert loaded.records == [] and any("tool_calls" in e.field for e in loaded.errors)


def test_redaction_reaches_a_calls_arguments_and_keeps_them_json(tmp_path):
    from tunesmith.data.redact import redact_file

    row = broken(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(
        arguments=json.dumps({"city": "Oslo", "email": "kari.nordmann@example.no"})))
    source = write_jsonl(tmp_path / "train.jsonl", [row])
    report = redact_file(source, tmp_path / "clean.jsonl")
    written = json.loads((tmp_path / "clean.jsonl").read_text())
    arguments = json.loads(written["messages"][1]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"city": "Oslo", "email": "<EMAIL_1>"}
    assert [r.field for r in report.redactions] == ["messages[1].tool_calls[0].function.arguments"]
    assert load_file(tmp_path / "clean.jsonl").errors == []
