import json

from tunesmith.data.check import DataReport, check_data, length_histogram

GOLD = [{"role": "user", "content": "Symbol of gold?"}, {"role": "assistant", "content": "Au."}]
PARAGRAPH = (
    "The periodic table arranges the chemical elements by atomic number, electron configuration and recurring "
    "chemical properties; elements in the same column share similar behaviour, and rows are called periods "
    "while columns are called groups, which is why chemists can predict how an unknown element behaves."
)
LONG_QUESTION = "Hydrogen has atomic number 1 and helium has atomic number 2; which element has atomic number 3 and what is its symbol?"


def chat(user, assistant):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def chat_length(tokenizer, messages):
    return len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])


def test_clean_file_is_ok_with_summary(tmp_path):
    report = check_data(write_jsonl(tmp_path / "train.jsonl", [{"messages": GOLD}, chat("Symbol of iron?", "Fe.")]))
    assert report.ok and report.errors == [] and report.warnings == []
    summary = report.files[0]
    assert (summary.role, summary.kind, summary.format, summary.rows, summary.valid_rows) == ("train", "chat", "chat", 2, 2)


def test_errors_from_both_files_are_reported_and_make_it_not_ok(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": GOLD}, "{broken", {"messages": [{"role": "bot", "content": "x"}]}])
    valid = write_jsonl(tmp_path / "valid.jsonl", [{"messages": GOLD[1:]}])  # not GOLD[:1]: that file would be prompts
    report = check_data(train, valid)
    assert not report.ok
    located = {(e["file"].rsplit("/", 1)[-1], e["line"], e["field"]) for e in report.errors}
    assert {("train.jsonl", 2, ""), ("train.jsonl", 3, "messages[0].role"), ("valid.jsonl", 1, "messages[0].role")} <= located
    assert report.files[1].valid_rows == 0


def test_token_stats_and_trained_tokens_on_a_hand_checked_file(tmp_path, tokenizer):
    rows = [{"messages": GOLD}, chat(LONG_QUESTION, "Lithium, Li."), chat("Symbol of iron?", "Fe.")]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows), tokenizer=tokenizer, max_length=512)
    # ChatML with the default system prompt: 36 tokens, of which "Au" "." "<|im_end|>" are trained
    assert chat_length(tokenizer, GOLD) == 36
    lengths = sorted(chat_length(tokenizer, row["messages"]) for row in rows)
    stats = report.token_stats[0]
    assert (stats.count, stats.min, stats.median, stats.p95, stats.max) == (3, lengths[0], lengths[1], lengths[2], lengths[2])
    trained = sum(len(tokenizer(row["messages"][1]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]) for row in rows)
    assert stats.trained_tokens == trained and stats.truncated_rows == 0
    assert report.preview.line == 1
    assert report.preview.text.endswith("user\nSymbol of gold?<|im_end|>\n<|im_start|>assistant\n[[Au.<|im_end|>]]\n")


def test_text_file_stats_count_every_token_as_trained(tmp_path, tokenizer):
    path = tmp_path / "corpus.txt"
    path.write_text("The quick brown fox jumps over the lazy dog.\n\nHydrogen has atomic number 1.\n")
    report = check_data(path, tokenizer=tokenizer, max_length=512)
    stats = report.token_stats[0]
    # 10 tokens + EOS, and 7 tokens + EOS (checked by hand with the tiny tokenizer)
    first = len(tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]) + 1
    second = len(tokenizer("Hydrogen has atomic number 1.")["input_ids"]) + 1
    assert first == 11
    # every token is trained except each document's first, which no prefix predicts
    assert (stats.count, stats.min, stats.max, stats.trained_tokens) == (2, min(first, second), max(first, second), first + second - 2)
    assert report.files[0].kind == "text"


def test_long_rows_are_warned_with_line_numbers(tmp_path, tokenizer):
    rows = [{"messages": GOLD}, chat(LONG_QUESTION * 3, "Li."), chat("Symbol of iron?", "Fe."), chat(LONG_QUESTION * 2, "Li.")]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows), tokenizer=tokenizer, max_length=64)
    (warning,) = [w for w in report.warnings if w.kind == "long_rows"]
    assert [location.line for location in warning.locations] == [2, 4]
    assert "will be truncated" in warning.message and "lines 2, 4" in warning.message
    assert report.token_stats[0].truncated_rows == 2 and report.ok


def test_exact_and_near_duplicates_are_warned(tmp_path):
    rows = [
        chat("Explain the periodic table.", PARAGRAPH),
        {"messages": GOLD},
        chat("  symbol OF gold? ", "Au."),  # same once case and whitespace are normalised
        chat("Explain the periodic table.", PARAGRAPH.replace("chemists", "students")),
        chat("Symbol of iron?", "Fe."),
    ]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows))
    kinds = {w.kind: [loc.line for loc in w.locations] for w in report.warnings}
    assert kinds == {"duplicate": [2, 3], "near_duplicate": [1, 4]}
    assert report.ok


def test_a_shared_system_prompt_makes_no_near_duplicates_and_still_counts_for_exact_ones(tmp_path):
    def with_system(system, user, assistant):
        return {"messages": [{"role": "system", "content": system}] + chat(user, assistant)["messages"]}

    rows = [with_system(PARAGRAPH, "Symbol of gold?", "Au."), with_system(PARAGRAPH, "Symbol of iron?", "Fe."),
            with_system(PARAGRAPH, "Symbol of tin?", "Sn."), with_system(PARAGRAPH, "Symbol of tin?", "Sn."),
            with_system("Be brief.", "Symbol of tin?", "Sn.")]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows))
    kinds = {w.kind: [loc.line for loc in w.locations] for w in report.warnings}
    assert kinds == {"duplicate": [3, 4], "near_duplicate": [3, 5]}  # the system prompt alone is no near-duplicate


def test_leakage_between_train_and_valid_names_both_lines(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [chat("Symbol of iron?", "Fe."), {"messages": GOLD}, chat("Explain the table.", PARAGRAPH)])
    valid = write_jsonl(tmp_path / "valid.jsonl", [chat("Explain the table!", PARAGRAPH + " Thanks!"), {"messages": GOLD}])
    report = check_data(train, valid)
    by_kind = {w.kind: w for w in report.warnings}
    assert set(by_kind) == {"leakage", "near_leakage"}
    assert [(loc.file.rsplit("/", 1)[-1], loc.line) for loc in by_kind["leakage"].locations] == [("train.jsonl", 2), ("valid.jsonl", 2)]
    assert [(loc.file.rsplit("/", 1)[-1], loc.line) for loc in by_kind["near_leakage"].locations] == [("train.jsonl", 3), ("valid.jsonl", 1)]


def test_pii_is_reported_with_masked_snippets(tmp_path):
    rows = [chat("Mail me at jane.doe@example.com please", "Sure."), {"messages": GOLD}, chat("My card is 4111 1111 1111 1111", "Noted.")]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows))
    assert [(p.line, p.kind) for p in report.pii] == [(1, "email"), (3, "credit_card")]
    assert "[EMAIL]" in report.pii[0].snippet and "jane" not in report.pii[0].snippet
    assert report.ok


def test_report_json_round_trips(tmp_path, tokenizer):
    rows = [{"messages": GOLD}, {"messages": GOLD}, "not json", chat("ip 10.0.0.1", "ok")]
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows), tokenizer=tokenizer)
    dumped = json.loads(report.model_dump_json())
    assert dumped["ok"] is False and dumped["errors"][0]["line"] == 3
    again = DataReport.model_validate_json(report.model_dump_json())
    assert again == report and not again.ok


def test_file_whose_rows_are_all_short_or_invalid_is_reported_not_crashed(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"oops": 1}\n{"messages": [{"role": "user", "content": "hi"}]}\n')  # the other way round it is prompts
    report = check_data(path)
    assert not report.ok and {e["line"] for e in report.errors} == {1, 2}


def test_length_histogram_covers_min_to_max_in_equal_bins_and_counts_every_row():
    lengths = [5, 7, 7, 30, 64, 64, 100]
    bins = length_histogram(lengths, bins=4)
    assert [(b.low, b.high, b.rows) for b in bins] == [(5, 28, 3), (29, 52, 1), (53, 76, 2), (77, 100, 1)]
    assert [(b.low, b.high, b.rows) for b in length_histogram([9, 9, 10])] == [(9, 9, 2), (10, 10, 1)]
