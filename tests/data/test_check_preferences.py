"""`tunesmith data check` on preference (DPO) files: detection, row errors, token stats per part, duplicates, leakage, PII."""
import json

from rich.console import Console

from tunesmith.cli_render import print_data_report
from tunesmith.data.check import check_data, is_preference_file
from tunesmith.data.preference import load_preferences, pair_token_lengths, render_pair


def pair(prompt, chosen, rejected):
    return {"input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


GOLD = pair("Symbol of gold?", "Au, as any chemist will tell you.", "Au.")
IRON = pair("Symbol of iron?", "Fe, from the Latin ferrum.", "Fe.")
LONG = pair("Hydrogen has atomic number 1 and helium has atomic number 2; which element has number 3? " * 2,
            "Lithium, the lightest metal.", "Li.")


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_preference_files_are_recognised_in_both_formats_but_instruction_rows_are_not(tmp_path):
    assert is_preference_file(write_jsonl(tmp_path / "openai.jsonl", ["{broken", GOLD]))
    assert is_preference_file(write_jsonl(tmp_path / "trl.jsonl", [{"prompt": "Gold?", "chosen": "Au!", "rejected": "Au"}]))
    assert not is_preference_file(write_jsonl(tmp_path / "instruction.jsonl", [{"instruction": "Gold?", "input": "x", "output": "Au"}]))
    assert not is_preference_file(tmp_path / "missing.jsonl")
    report = check_data(tmp_path / "trl.jsonl")
    assert report.ok and (report.files[0].kind, report.files[0].format, report.files[0].valid_rows) == ("preference", "trl", 1)


def test_invalid_pairs_are_errors_with_line_and_field(tmp_path):
    identical = pair("Gold?", "Au.", "Au.")
    two_answers = {**GOLD, "preferred_output": GOLD["preferred_output"] * 2}
    user_answer = {**GOLD, "non_preferred_output": [{"role": "user", "content": "Ag."}]}
    missing = {key: value for key, value in GOLD.items() if key != "non_preferred_output"}
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [GOLD, identical, two_answers, user_answer, missing]))
    assert not report.ok and report.files[0].valid_rows == 1
    located = {(e["line"], e["field"]) for e in report.errors}
    assert located == {(2, "non_preferred_output[0].content"), (3, "preferred_output"),
                       (4, "non_preferred_output[0].role"), (5, "non_preferred_output")}


def test_token_stats_per_part_truncation_and_a_preview_of_both_sides(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", [GOLD, IRON, LONG])
    pairs = load_preferences(path).pairs
    lengths = [pair_token_lengths(tokenizer, p) for p in pairs]
    max_length = sorted(length.longest for length in lengths)[1]  # only the longest pair does not fit
    report = check_data(path, tokenizer=tokenizer, max_length=max_length)
    stats = {s.part: s for s in report.token_stats}
    assert list(stats) == ["prompt", "chosen", "rejected", "pair"]
    for part in ("prompt", "chosen", "rejected"):
        values = sorted(getattr(length, part) for length in lengths)
        assert (stats[part].count, stats[part].min, stats[part].median, stats[part].max) == (3, values[0], values[1], values[2])
    rendered = [render_pair(tokenizer, p, max_length) for p in pairs]
    assert stats["chosen"].trained_tokens == sum(r.chosen.num_trained for r in rendered)
    assert stats["pair"].trained_tokens == stats["chosen"].trained_tokens + stats["rejected"].trained_tokens
    assert stats["prompt"].trained_tokens == 0 and stats["pair"].truncated_rows == 1
    (warning,) = report.warnings
    assert warning.kind == "long_rows" and [loc.line for loc in warning.locations] == [3]
    assert report.preview.line == 1
    assert "user\nSymbol of gold?<|im_end|>\n<|im_start|>assistant\n[[Au, as any chemist will tell you.<|im_end|>]]" in report.preview.text
    assert report.preview.text.index("preferred:") < report.preview.text.index("non-preferred:\n") < report.preview.text.index("[[Au.<|im_end|>]]")


def test_repeated_pairs_and_prompts_shared_with_valid_are_warned_but_one_prompt_with_two_pairs_is_not(tmp_path):
    other_answers = pair("Symbol of gold?", "Au: aurum, shining dawn.", "Gold is Au.")
    train = write_jsonl(tmp_path / "train.jsonl", [GOLD, other_answers, IRON, GOLD])
    valid = write_jsonl(tmp_path / "valid.jsonl", [pair("symbol OF iron?", "Fe!", "Iron."), pair("Symbol of tin?", "Sn.", "Tin.")])
    report = check_data(train, valid)
    by_kind = {w.kind: [(loc.file.rsplit("/", 1)[-1], loc.line) for loc in w.locations] for w in report.warnings}
    assert by_kind == {"duplicate": [("train.jsonl", 1), ("train.jsonl", 4)],
                       "leakage": [("train.jsonl", 3), ("valid.jsonl", 1)]}
    assert report.ok


def test_pii_in_any_part_of_a_pair_is_reported_masked(tmp_path):
    leaky = pair("Who do I write to?", "Write to jane.doe@example.com, she knows.", "Nobody.")
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [GOLD, leaky]))
    assert [(p.line, p.kind) for p in report.pii] == [(2, "email")]
    assert "[EMAIL]" in report.pii[0].snippet and "jane" not in report.pii[0].snippet


def test_a_validation_file_of_the_other_kind_is_an_error(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [GOLD])
    chats = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}])
    for train, valid, message in ((pairs, chats, "the validation file has supervised rows, the training file preference pairs"),
                                  (chats, pairs, "the validation file has preference pairs, the training file supervised rows")):
        report = check_data(train, valid)
        assert not report.ok and [(e["file"], e["line"], e["message"]) for e in report.errors] == [(str(valid), 0, message)]


def test_the_cli_report_shows_the_parts_and_the_preference_format(tmp_path, tokenizer):
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [GOLD, IRON]), tokenizer=tokenizer)
    console = Console(record=True, width=200)
    print_data_report(report, console)
    output = console.export_text()
    assert "preference (openai)" in output and "Tokens per pair part" in output
    assert all(f" {part} " in output for part in ("prompt", "chosen", "rejected", "pair"))
    assert "non-preferred:" in output and "OK: no errors" in output
