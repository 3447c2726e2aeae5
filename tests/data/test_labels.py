import json
import re
from pathlib import Path

import pytest

from tunesmith.data.labels import MODERATION_CATEGORIES, class_balance, load_labeled_file

REPO = Path(__file__).resolve().parents[2]
LABELS = ("spam", "ham", "hate", "violence")


def write_jsonl(path, rows):
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def test_single_label_text_and_chat_rows_load_with_their_lines(tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi", "name": "ann"}, {"role": "assistant", "content": "hello"}],
            "label": "ham"}
    loaded = load_labeled_file(write_jsonl(tmp_path / "a.jsonl", [{"text": "buy now", "label": "spam"}, "", chat]), LABELS)
    assert loaded.errors == [] and loaded.mode == "single" and loaded.rows == 2
    first, second = loaded.records
    assert (first.line, first.text, first.labels) == (1, "buy now", ("spam",))
    assert (second.line, second.labels) == (3, ("ham",))
    assert second.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_multi_label_rows_allow_an_empty_list(tmp_path):
    rows = [{"text": "fine", "labels": []}, {"text": "bad", "labels": ["hate", "violence"]}]
    loaded = load_labeled_file(write_jsonl(tmp_path / "m.jsonl", rows), LABELS)
    assert loaded.errors == [] and loaded.mode == "multi"
    assert [r.labels for r in loaded.records] == [(), ("hate", "violence")]


def test_unknown_label_reads_file_line_field_and_suggests_the_nearest(tmp_path):
    rows = [{"text": "a", "labels": []}, {"text": "b", "labels": ["hat"]}]
    loaded = load_labeled_file(write_jsonl(tmp_path / "m.jsonl", rows), LABELS)
    assert [str(e) for e in loaded.errors] == [
        f"{tmp_path / 'm.jsonl'}:2: labels[0]: unknown label 'hat' — did you mean 'hate'? "
        "declared labels: spam, ham, hate, violence"
    ]
    assert [r.line for r in loaded.records] == [1]


def test_without_a_label_set_any_label_is_accepted(tmp_path):
    loaded = load_labeled_file(write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": "anything"}]))
    assert loaded.errors == [] and loaded.records[0].labels == ("anything",)


@pytest.mark.parametrize("row, field, message", [
    ({"text": 3, "label": "spam"}, "text", "expected a string, got number"),
    ({"text": "  ", "label": "spam"}, "text", "empty text"),
    ({"text": "x", "label": ["spam"]}, "label", "expected a string, got list"),
    ({"text": "x", "label": ""}, "label", "empty label"),
    ({"label": "spam"}, "text", "missing key 'text'"),
    ({"text": "x"}, "label", "missing key 'label'"),
    ({"text": "x", "lable": "spam"}, "lable", "unknown key 'lable'"),
    ({"text": "x", "messages": [{"role": "user", "content": "y"}], "label": "spam"}, "messages", "row has both text and messages"),
    ({"text": "x", "label": "spam", "labels": ["spam"]}, "labels", "row has both label and labels"),
    ({"text": "x", "labels": ["spam"]}, "labels", "multi-label row in a single-label file"),
    ({"messages": [], "label": "spam"}, "messages", "expected a list of messages, got an empty list"),
    ({"messages": [{"role": "bot", "content": "y"}], "label": "spam"}, "messages[0].role", "unknown role 'bot'"),
    ({"messages": [{"role": "user", "content": ""}], "label": "spam"}, "messages[0].content", "empty text"),
    ({"messages": [{"role": "user", "content": "y", "weight": 1}], "label": "spam"}, "messages[0].weight", "unknown key 'weight'"),
])
def test_each_error_is_reported_at_its_line_and_field(tmp_path, row, field, message):
    good = {"text": "ok", "label": "ham"}
    loaded = load_labeled_file(write_jsonl(tmp_path / "a.jsonl", [good, good, row]), LABELS)
    assert [(e.line, e.field, e.message) for e in loaded.errors] == [(3, field, message)]
    assert all(e.hint for e in loaded.errors)
    assert len(loaded.records) == 2


def test_a_typo_of_label_is_reported_once_with_a_suggestion(tmp_path):
    loaded = load_labeled_file(write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "lable": "spam"}]), LABELS)
    assert [(e.field, e.hint) for e in loaded.errors] == [("lable", "did you mean 'label'?")]


@pytest.mark.parametrize("labels, message", [
    ("hate", "expected a list of strings, got string"),
    (["hate", 3], "expected a string, got number"),
    (["hate", "hate"], "label 'hate' listed twice"),
])
def test_multi_label_type_errors(tmp_path, labels, message):
    rows = [{"text": "a", "labels": []}, {"text": "b", "labels": ["ham"]}, {"text": "c", "labels": labels}]
    loaded = load_labeled_file(write_jsonl(tmp_path / "m.jsonl", rows), LABELS)
    assert [(e.line, e.message) for e in loaded.errors] == [(3, message)]


def test_the_majority_form_decides_and_the_other_rows_are_errors(tmp_path):
    rows = [{"text": "a", "labels": ["ham"]}, {"text": "b", "labels": []}, {"text": "c", "label": "spam"}]
    loaded = load_labeled_file(write_jsonl(tmp_path / "m.jsonl", rows), LABELS)
    assert loaded.mode == "multi"
    assert [(e.line, e.field, e.message, e.hint) for e in loaded.errors] == [
        (3, "label", "single-label row in a multi-label file", 'write "labels": ["spam"]')]


def test_file_level_problems(tmp_path):
    missing = load_labeled_file(tmp_path / "nope.jsonl")
    assert [(e.line, e.message) for e in missing.errors] == [(0, "file not found")]
    empty = load_labeled_file(write_jsonl(tmp_path / "e.jsonl", ["", "  "]))
    assert [e.message for e in empty.errors] == ["file is empty"]
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "a", "label": "ham"}\n[1]\n{"text": \n\xff\n')
    bad = load_labeled_file(tmp_path / "bad.jsonl", LABELS)
    assert [(e.line, e.message.split(":")[0]) for e in bad.errors] == [
        (2, "row is a JSON list, not an object"), (3, "invalid JSON"), (4, "not valid UTF-8 (byte 0xff at column 1)")]
    assert bad.rows == 4 and len(bad.records) == 1


def test_class_balance_counts_declared_labels_and_the_unlabelled(tmp_path):
    rows = [{"text": t, "labels": l} for t, l in [("a", []), ("b", []), ("c", []), ("d", ["hate"]),
                                                 ("e", ["hate", "violence"]), ("f", ["hate"])]]
    records = load_labeled_file(write_jsonl(tmp_path / "m.jsonl", rows), LABELS).records
    balance = class_balance(records, LABELS)
    assert balance.counts == {"spam": 0, "ham": 0, "hate": 3, "violence": 1}
    assert (balance.rows, balance.unlabelled, balance.missing) == (6, 3, ["spam", "ham"])
    assert balance.imbalance == 3.0
    assert class_balance(records).counts == {"hate": 3, "violence": 1}


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_shipped_moderation_example_validates_against_the_13_categories(split):
    loaded = load_labeled_file(REPO / f"examples/moderation/{split}.jsonl", MODERATION_CATEGORIES)
    assert loaded.errors == [] and loaded.mode == "multi"
    balance = class_balance(loaded.records, MODERATION_CATEGORIES)
    assert balance.unlabelled and sum(balance.counts.values())  # harmless and harmful rows in every split


def _moderation_rows(split):
    provenance = [json.loads(line) for line in (REPO / "examples/moderation/sources.jsonl").read_text().splitlines()]
    records = load_labeled_file(REPO / f"examples/moderation/{split}.jsonl").records
    by_line = {row["line"]: row for row in provenance if row["split"] == split}
    return [(record.text, by_line[record.line]) for record in records]


def _words(text):
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def test_shipped_moderation_test_split_shares_no_text_group_or_near_duplicate_with_training():
    rows = {split: _moderation_rows(split) for split in ("train", "valid", "test")}
    seen = {text.lower() for split in ("train", "valid") for text, _ in rows[split]}
    assert not {text.lower() for text, _ in rows["test"]} & seen
    groups = {split: {row["group"] for _, row in rows[split]} for split in rows}
    assert not groups["test"] & (groups["train"] | groups["valid"])  # split by source group, never by row
    train = [_words(text) for split in ("train", "valid") for text, _ in rows[split]]
    near = [text for text, _ in rows["test"]
            if any(len(words & other) >= 0.7 * len(words | other) for words in [_words(text)] for other in train)]
    assert near == []  # no test text within word-set Jaccard 0.7 of a training text


def test_shipped_moderation_splits_hold_every_harmful_source_in_both_styles():
    harmful = {split: [(text, row) for text, row in _moderation_rows(split) if row["kind"] == "harmful"]
               for split in ("train", "test")}
    sources = {split: {row["source"] for _, row in harmful[split]} for split in harmful}
    assert sources["train"] == sources["test"] >= {"harmbench", "do-not-answer/malicious_uses",
                                                    "do-not-answer/discrimination_exclusion_toxicity_hateful_offensive"}
    for split, split_rows in harmful.items():  # Do-Not-Answer's questions and HarmBench's imperatives on both sides
        questions = sum(text.endswith("?") for text, _ in split_rows)
        assert 0.2 < questions / len(split_rows) < 0.8, split
