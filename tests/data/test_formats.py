import json

import pytest

from tunesmith.data.formats import RowError, load_file

GOOD_CHAT = {"messages": [{"role": "user", "content": "Symbol of gold?"}, {"role": "assistant", "content": "Au."}]}


def write_jsonl(path, rows):
    """Rows are dicts (dumped as JSON) or raw strings (written as they are)."""
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def chat(*turns, **extra):
    return {"messages": [{"role": role, "content": content} for role, content in turns], **extra}


def test_valid_chat_loads_with_lines_and_drops_name(tmp_path):
    row = chat(("system", "Be brief."), ("user", "Gold?"), ("assistant", "Au."))
    row["messages"][2].update(name="helper", weight=1)
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [GOOD_CHAT, "", "   ", row]))
    assert loaded.errors == []
    assert (loaded.kind, loaded.format, loaded.rows) == ("chat", "chat", 2)
    assert [record.line for record in loaded.records] == [1, 4]
    assert loaded.records[1].messages[2] == {"role": "assistant", "content": "Au.", "weight": 1}


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ('{"messages": [', "", "invalid JSON"),
        ("[1, 2]", "", "not an object"),
        ({}, "messages", "missing key 'messages'"),
        ({"messages": "hi"}, "messages", "expected a list"),
        (chat(("user", "a"), ("bot", "b")), "messages[1].role", "unknown role 'bot'"),
        (chat(("user", "a"), ("assistant", "  \n")), "messages[1].content", "empty content"),
        ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}, "messages[0].content", "expected a string"),
        (chat(("user", "a")), "messages", "no assistant turn"),
        (chat(("assistant", "a"), ("user", "b"), ("assistant", "c")), "messages[0].role", "assistant turn before any user turn"),
        (chat(("user", "a"), ("system", "s"), ("assistant", "c")), "messages[1].role", "system message is not first"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0.5}]}, "messages[1].weight", "weight must be 0 or 1"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": True}]}, "messages[1].weight", "weight must be 0 or 1"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]}, "messages", "nothing is trained"),
        ({"messages": [{"role": "user", "contnet": "a"}, {"role": "assistant", "content": "b"}]}, "messages[0].contnet", "unknown key 'contnet'"),
    ],
)
def test_each_error_kind_is_reported_at_its_line_and_field(tmp_path, row, field, message):
    assert_reported_between_good_rows(tmp_path, GOOD_CHAT, row, field, message)


def assert_reported_between_good_rows(tmp_path, good, row, field, message):
    """`row` as line 3 of four, the others `good`: only it is refused, at `field`, with a hint."""
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [good, good, row, good]))
    assert [record.line for record in loaded.records] == [1, 2, 4]
    matching = [error for error in loaded.errors if error.line == 3 and error.field == field and message in error.message]
    assert matching, loaded.errors
    assert all(error.hint for error in loaded.errors)


def test_unknown_key_suggests_nearest_and_is_not_also_missing(tmp_path):
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [GOOD_CHAT, {"mesages": GOOD_CHAT["messages"]}]))
    assert len(loaded.errors) == 1
    assert loaded.errors[0].field == "mesages" and "did you mean 'messages'" in loaded.errors[0].hint


def test_all_errors_in_a_file_are_collected(tmp_path):
    rows = [GOOD_CHAT, "not json", chat(("user", "a"), ("bot", "b")), GOOD_CHAT, "[]", {"messages": 5}]
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", rows))
    assert sorted({error.line for error in loaded.errors}) == [2, 3, 5, 6]
    assert [record.line for record in loaded.records] == [1, 4]
    assert loaded.rows == 6


def test_row_error_reads_as_file_line_field_message_hint():
    error = RowError("train.jsonl", 12, "messages[1].role", "unknown role 'bot'", "use one of system, user, assistant")
    assert str(error) == "train.jsonl:12: messages[1].role: unknown role 'bot' — use one of system, user, assistant"
    assert str(RowError("x.jsonl", 0, "", "file is empty", "add rows")) == "x.jsonl: file is empty — add rows"


def test_instruction_rows_become_chats(tmp_path):
    rows = [
        {"instruction": "Translate.", "input": "bonjour", "output": "hello"},
        {"instruction": "Name a noble gas.", "input": "", "output": "Neon."},
        {"instruction": "Say hi.", "output": "Hi."},
    ]
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", rows))
    assert loaded.errors == [] and (loaded.kind, loaded.format) == ("chat", "instruction")
    assert loaded.records[0].messages == [
        {"role": "user", "content": "Translate.\n\nbonjour"},
        {"role": "assistant", "content": "hello"},
    ]
    assert loaded.records[1].messages[0]["content"] == "Name a noble gas."


def test_majority_format_wins_and_other_rows_are_errors(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, GOOD_CHAT, {"instruction": "e", "outptu": "f"}]
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", rows))
    assert loaded.format == "instruction"
    assert {(e.line, e.field) for e in loaded.errors} == {(3, ""), (4, "outptu")}
    assert "chat format" in loaded.errors[0].message


def test_text_file_splits_documents_on_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("First doc line one.\nline two.\n\n\n  \nSecond doc.\n\nThird.\n")
    loaded = load_file(path)
    assert loaded.errors == [] and loaded.kind == "text"
    assert [(r.line, r.text) for r in loaded.records] == [(1, "First doc line one.\nline two."), (6, "Second doc."), (8, "Third.")]


def test_text_jsonl_rows(tmp_path):
    loaded = load_file(write_jsonl(tmp_path / "corpus.jsonl", [{"text": "one"}, {"text": ""}, {"text": 7}]))
    assert loaded.kind == "text" and [r.text for r in loaded.records] == ["one"]
    assert [(e.line, e.field) for e in loaded.errors] == [(2, "text"), (3, "text")]


def test_missing_empty_and_non_utf8_files(tmp_path):
    missing = load_file(tmp_path / "nope.jsonl")
    assert missing.errors[0].message == "file not found"
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    assert load_file(tmp_path / "empty.jsonl").errors[0].message == "file is empty"
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD_CHAT).encode() + b"\n" + '{"text": "café"}'.encode("latin-1") + b"\n")
    loaded = load_file(path)
    assert [(e.line, "UTF-8" in e.message) for e in loaded.errors] == [(2, True)]
    assert len(loaded.records) == 1


def test_prompt_completion_strings_become_two_turn_chats(tmp_path):
    rows = [{"prompt": "Symbol of gold?", "completion": "Au."}, {"prompt": "Symbol of iron?", "completion": "Fe."}]
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", rows))
    assert loaded.errors == [] and (loaded.kind, loaded.format) == ("chat", "prompt_completion")
    assert loaded.records[0].messages == [{"role": "user", "content": "Symbol of gold?"},
                                          {"role": "assistant", "content": "Au."}]


def test_conversational_prompt_completion_trains_the_completion_only(tmp_path):
    row = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Gold?"},
                      {"role": "assistant", "content": "Au."}, {"role": "user", "content": "Iron?"}],
           "completion": [{"role": "assistant", "content": "Fe."}]}
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [row]))
    assert loaded.errors == [] and loaded.format == "prompt_completion"
    assert [(m["role"], m["content"], m.get("weight", 1)) for m in loaded.records[0].messages] == [
        ("system", "Be brief.", 1), ("user", "Gold?", 1), ("assistant", "Au.", 0), ("user", "Iron?", 1),
        ("assistant", "Fe.", 1)]


def test_sharegpt_conversations_become_chats(tmp_path):
    row = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Gold?"},
                             {"from": "gpt", "value": "Au."}]}
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [row, row]))
    assert loaded.errors == [] and (loaded.kind, loaded.format) == ("chat", "sharegpt")
    assert loaded.records[1].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Gold?"},
                                          {"role": "assistant", "content": "Au."}]


def turns(*pairs):
    return {"conversations": [{"from": speaker, "value": value} for speaker, value in pairs]}


PROMPT = [{"role": "user", "content": "Gold?"}]
ANSWER = [{"role": "assistant", "content": "Au."}]


@pytest.mark.parametrize(
    ("good", "row", "field", "message"),
    [
        ({"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "  "}, "completion", "empty content"),
        ({"prompt": "a", "completion": "b"}, {"prompt": "a", "complete": "b"}, "complete", "unknown key 'complete'"),
        ({"prompt": "a", "completion": "b"}, {"prompt": "a"}, "completion", "missing key 'completion'"),
        ({"prompt": "a", "completion": "b"}, {"prompt": PROMPT, "completion": "b"}, "completion", "differ in form"),
        ({"prompt": PROMPT, "completion": ANSWER}, {"prompt": PROMPT, "completion": PROMPT}, "completion[0].role",
         "completion turns are the assistant's"),
        ({"prompt": PROMPT, "completion": ANSWER}, {"prompt": ANSWER + PROMPT, "completion": ANSWER}, "prompt[0].role",
         "assistant turn before any user turn"),
        ({"prompt": PROMPT, "completion": ANSWER}, {"prompt": PROMPT + [dict(ANSWER[0], weight=1)], "completion": ANSWER},
         "prompt[1].weight", "the prompt is never trained"),
        ({"prompt": PROMPT, "completion": ANSWER}, {"prompt": PROMPT, "completion": []}, "completion", "no assistant turn"),
        ({"prompt": PROMPT, "completion": ANSWER}, {"prompt": PROMPT, "completion": [dict(ANSWER[0], weight=0)]},
         "completion", "nothing is trained"),
        (turns(("human", "a"), ("gpt", "b")), turns(("human", "a"), ("bot", "b")), "conversations[1].from", "unknown speaker 'bot'"),
        (turns(("human", "a"), ("gpt", "b")), turns(("human", "a"), ("gpt", "")), "conversations[1].value", "empty content"),
        (turns(("human", "a"), ("gpt", "b")), turns(("gpt", "a"), ("human", "b")), "conversations[0].from",
         "assistant turn before any user turn"),
        (turns(("human", "a"), ("gpt", "b")), turns(("human", "a")), "conversations", "no assistant turn"),
        (turns(("human", "a"), ("gpt", "b")), {"conversations": "hi"}, "conversations", "expected a list of turns"),
        (turns(("human", "a"), ("gpt", "b")), {"conversations": [{"from": "human", "vaule": "a"}, {"from": "gpt", "value": "b"}]},
         "conversations[0].vaule", "unknown key 'vaule'"),
    ],
)
def test_prompt_completion_and_sharegpt_errors_name_line_and_field(tmp_path, good, row, field, message):
    assert_reported_between_good_rows(tmp_path, good, row, field, message)


def test_a_conversational_prompt_without_completion_is_reported_as_missing_only(tmp_path):
    loaded = load_file(write_jsonl(tmp_path / "train.jsonl", [{"prompt": PROMPT, "completion": ANSWER}, {"prompt": PROMPT}]))
    assert [(e.line, e.field, e.message) for e in loaded.errors] == [(2, "completion", "missing key 'completion'")]
