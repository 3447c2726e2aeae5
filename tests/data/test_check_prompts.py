"""`tunesmith data check` on prompt files (OpenAI's reinforcement rows): detection, row errors by line and field,
repeated and leaked prompts, PII, prompt tokens as generation starts from them, the CLI report, and upload."""
import json

from rich.console import Console

from tests.serve.server import write_chat_file
from tunesmith.cli_render import print_data_report
from tunesmith.data.check import check_data, is_prompt_file
from tunesmith.models.chat import render_prompts
from tunesmith.serve.training_file import check_training_file


def prompt(question, answer, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"messages": messages, "answer": answer}


TWO = prompt("What is 2 + 2?", "4", system="Answer with a number.")
SIX = prompt("What is 3 + 3?", "6")
LONG = prompt("Add up every number from one to twenty, one at a time, showing each partial sum as you go. " * 3, "210")
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_prompt_files_are_recognised_by_their_first_good_row_and_pass(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", ["{broken", TWO, SIX])
    assert is_prompt_file(path)
    assert not is_prompt_file(write_jsonl(tmp_path / "chat.jsonl", [CHAT]))
    assert not is_prompt_file(write_jsonl(tmp_path / "classify.jsonl", [{**SIX, "label": "math"}]))  # a row to classify
    assert not is_prompt_file(tmp_path / "missing.jsonl")
    report = check_data(write_jsonl(tmp_path / "good.jsonl", [TWO, SIX]))
    assert report.ok and not report.warnings and report.preview is None
    assert [(f.kind, f.format, f.rows, f.valid_rows) for f in report.files] == [("prompts", "openai", 2, 2)]


def test_a_row_with_an_answer_or_without_messages_is_an_error_with_line_and_field(tmp_path):
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [TWO, CHAT, {"answer": "7"}, "", SIX]))
    assert not report.ok and (report.files[0].rows, report.files[0].valid_rows) == (4, 2)
    located = [(e["file"], e["line"], e["field"]) for e in report.errors]
    assert located == [(str(tmp_path / "train.jsonl"), 2, "messages[1].role"), (str(tmp_path / "train.jsonl"), 3, "messages")]
    assert all(e["hint"] for e in report.errors)
    assert "last message has role 'assistant'" in report.errors[0]["message"]


def test_repeated_prompts_and_prompts_shared_with_valid_are_warned(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [TWO, SIX, {**TWO, "answer": "four"}])
    valid = write_jsonl(tmp_path / "valid.jsonl", [prompt("what is 3 +   3?", "6"), prompt("What is 5 + 5?", "10")])
    report = check_data(train, valid)
    by_kind = {w.kind: [(loc.file.rsplit("/", 1)[-1], loc.line) for loc in w.locations] for w in report.warnings}
    assert by_kind["duplicate"] == [("train.jsonl", 1), ("train.jsonl", 3)]
    assert by_kind["leakage"] == [("train.jsonl", 2), ("valid.jsonl", 1)]
    assert report.ok and [f.role for f in report.files] == ["train", "valid"]


def test_pii_in_a_prompt_is_reported_masked(tmp_path):
    leaky = prompt("Write to jane.doe@example.com and tell her 3 + 3.", "6")
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [TWO, leaky]))
    assert [(p.line, p.kind) for p in report.pii] == [(2, "email")]
    assert "[EMAIL]" in report.pii[0].snippet and "jane" not in report.pii[0].snippet


def test_prompt_token_stats_count_the_rendered_prompt_and_warn_of_prompts_training_skips(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", [TWO, SIX, LONG])
    lengths = [len(ids) for ids in render_prompts(tokenizer, [row["messages"] for row in (TWO, SIX, LONG)])]
    max_length = lengths[2]  # a prompt at max_length leaves no room for an answer
    assert max(lengths[:2]) < max_length
    report = check_data(path, tokenizer=tokenizer, max_length=max_length)
    (stats,) = report.token_stats
    assert (stats.part, stats.count, stats.min, stats.max) == ("prompt", 3, min(lengths), max(lengths))
    assert stats.trained_tokens == 0 and stats.truncated_rows == 1 and sum(b.rows for b in stats.histogram) == 3
    (warning,) = report.warnings
    assert warning.kind == "long_rows" and [loc.line for loc in warning.locations] == [3] and "skips" in warning.message
    assert report.ok and report.preview is None


def test_a_validation_file_of_the_other_kind_is_an_error(tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [TWO])
    chats = write_jsonl(tmp_path / "chat.jsonl", [CHAT])
    for train, valid, message in (
            (prompts, chats, "the validation file has supervised rows, the training file prompts (rows ending with a user turn)"),
            (chats, prompts, "the validation file has prompts (rows ending with a user turn), the training file supervised rows")):
        for report in (check_data(train, valid), check_training_file(train, valid)):
            assert not report.ok and [(e["file"], e["line"], e["message"]) for e in report.errors] == [(str(valid), 0, message)]


def test_the_cli_report_shows_prompt_tokens_and_says_answers_are_sampled(tmp_path, tokenizer):
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [TWO, SIX]), tokenizer=tokenizer)
    console = Console(record=True, width=200)
    print_data_report(report, console)
    output = console.export_text()
    assert "prompts (openai)" in output and "Prompt tokens per row" in output and "trained tokens" not in output
    assert "sampled from the model during training and scored by the grader" in output and "OK: no errors" in output


def test_the_upload_check_reports_prompts_not_chat_rows(tmp_path):
    report = check_training_file(write_jsonl(tmp_path / "train.jsonl", [TWO, SIX]))
    assert report.ok and report.files[0].kind == "prompts"
    assert check_training_file(write_chat_file(tmp_path / "chat.jsonl")).files[0].kind == "chat"
