import json

import pytest

from tunesmith.data.preference import PreferencePair, load_preferences, pair_token_lengths, render_pair
from tunesmith.data.render import IGNORE_INDEX

PROMPT = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is a kluge?"}]
GOOD = {
    "input": {"messages": PROMPT},
    "preferred_output": [{"role": "assistant", "content": "A clever hack that works, for now."}],
    "non_preferred_output": [{"role": "assistant", "content": "A workaround."}],
}
GOOD_TRL = {"prompt": "What is a kluge?", "chosen": "A clever hack that works, for now.", "rejected": "A workaround."}


def write_jsonl(path, rows):
    """Rows are dicts (dumped as JSON) or raw strings (written as they are)."""
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def with_changes(row, **changes):
    return {**json.loads(json.dumps(row)), **changes}


def answer(content, role="assistant"):
    return [{"role": role, "content": content}]


def test_openai_rows_load_with_their_lines(tmp_path):
    loaded = load_preferences(write_jsonl(tmp_path / "train.jsonl", [GOOD, "", GOOD]))
    assert loaded.errors == []
    assert (loaded.format, loaded.rows) == ("openai", 2)
    assert [pair.line for pair in loaded.pairs] == [1, 3]
    pair = loaded.pairs[0]
    assert pair.prompt == PROMPT
    assert (pair.chosen, pair.rejected) == ("A clever hack that works, for now.", "A workaround.")
    assert pair.openai_row() == GOOD


@pytest.mark.parametrize(
    ("row", "prompt"),
    [
        (GOOD_TRL, [{"role": "user", "content": "What is a kluge?"}]),
        (with_changes(GOOD_TRL, prompt=PROMPT), PROMPT),
        (with_changes(GOOD_TRL, chosen=answer("A clever hack that works, for now."), rejected=answer("A workaround.")),
         [{"role": "user", "content": "What is a kluge?"}]),
    ],
    ids=["strings", "prompt messages", "answer messages"],
)
def test_trl_rows_convert_to_the_openai_shape(tmp_path, row, prompt):
    loaded = load_preferences(write_jsonl(tmp_path / "train.jsonl", [row]))
    assert loaded.errors == [] and loaded.format == "trl"
    assert loaded.pairs[0].openai_row() == {**GOOD, "input": {"messages": prompt}}


def test_multi_turn_prompt_and_dropped_name(tmp_path):
    prompt = [
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is a kluge?"},
    ]
    loaded = load_preferences(write_jsonl(tmp_path / "train.jsonl", [with_changes(GOOD, input={"messages": prompt})]))
    assert loaded.errors == []
    assert loaded.pairs[0].prompt[0] == {"role": "user", "content": "Hi"}


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ('{"input": ', "", "invalid JSON"),
        ("[1, 2]", "", "not an object"),
        ({"messages": PROMPT}, "", "not a preference pair"),
        (GOOD_TRL, "", "row is in trl format but this file is openai"),
        ({k: v for k, v in GOOD.items() if k != "non_preferred_output"}, "non_preferred_output", "missing key 'non_preferred_output'"),
        ({k: v for k, v in GOOD.items() if k != "input"}, "input", "missing key 'input'"),
        (with_changes(GOOD, non_prefered_output=GOOD["non_preferred_output"]), "non_prefered_output", "unknown key"),
        (with_changes(GOOD, input=PROMPT), "input", "expected an object"),
        (with_changes(GOOD, input={"messages": []}), "input.messages", "no messages"),
        (with_changes(GOOD, input={"mesages": PROMPT}), "input.mesages", "unknown key"),
        (with_changes(GOOD, input={"messages": [{"role": "bot", "content": "hi"}]}), "input.messages[0].role", "unknown role 'bot'"),
        (with_changes(GOOD, input={"messages": [{"role": "user", "content": " "}]}), "input.messages[0].content", "empty content"),
        (with_changes(GOOD, input={"messages": [*PROMPT, {"role": "assistant", "content": "Hm?"}]}), "input.messages[2].role", "last message has role 'assistant'"),
        (with_changes(GOOD, input={"messages": [PROMPT[1], PROMPT[0], PROMPT[1]]}), "input.messages[1].role", "system message is not first"),
        (with_changes(GOOD, input={"messages": [{"role": "assistant", "content": "Hi."}, PROMPT[1]]}), "input.messages[0].role", "assistant turn before any user turn"),
        (with_changes(GOOD, preferred_output=answer("")), "preferred_output[0].content", "empty content"),
        (with_changes(GOOD, preferred_output=[]), "preferred_output", "no message; expected exactly one"),
        (with_changes(GOOD, preferred_output=answer("a") + answer("b")), "preferred_output", "2 messages; expected exactly one"),
        (with_changes(GOOD, preferred_output="A hack."), "preferred_output", "expected a list"),
        (with_changes(GOOD, preferred_output=answer("A hack.", role="user")), "preferred_output[0].role", "must be an assistant message"),
        (with_changes(GOOD, non_preferred_output=[{"role": "assistant", "content": "x", "weight": 1}]), "non_preferred_output[0].weight", "no meaning"),
        (with_changes(GOOD, non_preferred_output=answer(" A clever hack that works, for now.")), "non_preferred_output[0].content", "identical to preferred_output"),
    ],
)
def test_each_openai_error_is_reported_at_its_line_and_field(tmp_path, row, field, message):
    loaded = load_preferences(write_jsonl(tmp_path / "train.jsonl", [GOOD, GOOD, row, GOOD]))
    assert [pair.line for pair in loaded.pairs] == [1, 2, 4]
    matching = [error for error in loaded.errors if error.line == 3 and error.field == field and message in error.message]
    assert matching, loaded.errors
    assert all(error.hint for error in loaded.errors)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({k: v for k, v in GOOD_TRL.items() if k != "chosen"}, "chosen", "missing key 'chosen'"),
        (with_changes(GOOD_TRL, prompt=""), "prompt", "empty content"),
        (with_changes(GOOD_TRL, prompt=3), "prompt", "expected a list of messages"),
        (with_changes(GOOD_TRL, rejected="  "), "rejected", "empty content"),
        (with_changes(GOOD_TRL, rejected=answer("a", role="system")), "rejected[0].role", "must be an assistant message"),
        (with_changes(GOOD_TRL, chosen=[PROMPT[1], *answer("a")]), "chosen", "2 messages"),
        (with_changes(GOOD_TRL, rejected=GOOD_TRL["chosen"]), "rejected", "identical to chosen"),
        (with_changes(GOOD_TRL, rejected=answer(GOOD_TRL["chosen"])), "rejected[0].content", "identical to chosen"),
        (GOOD, "", "row is in openai format but this file is trl"),
    ],
)
def test_each_trl_error_is_reported_at_its_line_and_field(tmp_path, row, field, message):
    loaded = load_preferences(write_jsonl(tmp_path / "train.jsonl", [GOOD_TRL, GOOD_TRL, row, GOOD_TRL]))
    assert loaded.format == "trl"
    assert [pair.line for pair in loaded.pairs] == [1, 2, 4]
    matching = [error for error in loaded.errors if error.line == 3 and error.field == field and message in error.message]
    assert matching, loaded.errors


def test_error_reads_as_file_line_field_message_hint(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [with_changes(GOOD, preferred_output=answer("a") + answer("b"))])
    error = load_preferences(path).errors[0]
    assert str(error).startswith(f"{path}:1: preferred_output: 2 messages; expected exactly one assistant message — keep only the final answer")


def test_file_problems_have_no_line(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    assert [str(e) for e in load_preferences(tmp_path / "empty.jsonl").errors] == [f"{tmp_path / 'empty.jsonl'}: file is empty — add at least one preference pair"]
    assert load_preferences(tmp_path / "missing.jsonl").errors[0].message == "file not found"


def test_undecodable_line_is_an_error_and_a_row(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n" + json.dumps(GOOD).encode() + b"\n")
    loaded = load_preferences(path)
    assert [(error.line, "UTF-8" in error.message) for error in loaded.errors] == [(2, True)]
    assert (loaded.rows, len(loaded.pairs)) == (3, 2)


def trained_text(tokenizer, example):
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def test_render_trains_only_each_answer_through_its_end_of_turn_token(tokenizer):
    prompt = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Gold?"}]
    pair = PreferencePair(1, prompt, "Au, obviously.", "The symbol is Au.")
    rendered = render_pair(tokenizer, pair, max_length=512)
    assert trained_text(tokenizer, rendered.chosen) == "Au, obviously.<|im_end|>"
    assert trained_text(tokenizer, rendered.rejected) == "The symbol is Au.<|im_end|>"
    # Both sides share the prompt up to the first trained token; the earlier assistant turn is context only.
    lengths = pair_token_lengths(tokenizer, pair)
    assert rendered.chosen.input_ids[: lengths.prompt] == rendered.rejected.input_ids[: lengths.prompt]
    assert all(label == IGNORE_INDEX for label in rendered.chosen.labels[: lengths.prompt])
    assert rendered.chosen.labels[lengths.prompt] != IGNORE_INDEX
    assert lengths.chosen == len(tokenizer("Au, obviously.<|im_end|>", add_special_tokens=False)["input_ids"])
    assert lengths.rejected == len(tokenizer("The symbol is Au.<|im_end|>", add_special_tokens=False)["input_ids"])
    assert lengths.longest == lengths.prompt + max(lengths.chosen, lengths.rejected)


def test_lengths_are_untruncated_and_render_truncates(tokenizer):
    pair = PreferencePair(1, [{"role": "user", "content": "x " * 100}], "yes", "no")
    lengths = pair_token_lengths(tokenizer, pair)
    rendered = render_pair(tokenizer, pair, max_length=16)
    assert lengths.prompt > 16 and rendered.chosen.truncated and len(rendered.chosen.input_ids) == 16
