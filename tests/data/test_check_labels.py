"""`tunesmith data check` on classification files: rows validated, class balance, leakage, tokens as classified."""
import json

from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.check import check_data


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


TRAIN = [{"text": "you people are vermin", "labels": ["hate"]}, {"text": "how do I kill a process", "labels": []},
         {"text": "I will hurt you", "labels": ["violence", "harassment/threatening"]}, {"text": "gold", "labels": []}]


def test_classification_file_gets_balance_tokens_and_preview(tmp_path, tokenizer):
    train = write(tmp_path / "train.jsonl", TRAIN)
    report = check_data(train, tokenizer=tokenizer, max_length=4)
    assert report.ok and report.files[0].kind == "classification" and report.files[0].format == "labels"
    [balance] = report.class_balance
    assert balance.counts == {"harassment/threatening": 1, "hate": 1, "violence": 1} and balance.unlabelled == 2
    assert balance.imbalance == 2.0
    lengths = [len(tokenizer(row["text"], add_special_tokens=False)["input_ids"]) for row in TRAIN]
    [stats] = report.token_stats
    assert (stats.max, stats.trained_tokens, stats.truncated_rows) == (max(lengths), sum(min(n, 4) for n in lengths),
                                                                       sum(n > 4 for n in lengths))
    assert [w.kind for w in report.warnings] == ["long_rows"]
    assert report.preview.text == "labels: hate\n[[you people are vermin]]"


def test_valid_file_is_checked_against_the_training_labels_and_for_leakage(tmp_path):
    train = write(tmp_path / "train.jsonl", TRAIN)
    valid = write(tmp_path / "valid.jsonl", [{"text": "Gold", "labels": []}, {"text": "they smell", "labels": ["hat"]}])
    report = check_data(train, valid)
    assert not report.ok
    assert [(e["line"], e["field"], e["message"]) for e in report.errors] == [(2, "labels[0]", "unknown label 'hat'")]
    assert "did you mean 'hate'" in report.errors[0]["hint"]
    leakage = [w for w in report.warnings if w.kind == "leakage"]
    assert len(leakage) == 1 and [(l.file, l.line) for l in leakage[0].locations] == [(str(train), 4), (str(valid), 1)]
    assert report.class_balance[1].missing == ["harassment/threatening", "hate", "violence"]


def test_single_label_valid_beside_multi_label_train_is_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", TRAIN)
    valid = write(tmp_path / "valid.jsonl", [{"text": "gold", "label": "hate"}])
    report = check_data(train, valid)
    assert any("the validation file has 'label' rows, the training file 'labels' rows" in e["message"] for e in report.errors)


def test_cli_prints_rows_per_label(tmp_path):
    train = write(tmp_path / "train.jsonl", [{"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"},
                                             {"text": "fine", "label": "pos"}])
    result = CliRunner().invoke(app, ["data", "check", str(train)])
    assert result.exit_code == 0, result.output
    assert "Rows per label" in result.output and "classification (label)" in result.output
    assert "imbalance" in result.output and "2×" in result.output


def test_personal_data_in_labelled_texts_is_found_by_line_and_masked(tmp_path):
    rows = TRAIN[:2] + [{"text": "mail me at jane.doe@example.com or I will hurt you", "labels": ["violence"]}]
    report = check_data(write(tmp_path / "train.jsonl", rows))
    [entry] = report.pii
    assert (entry.file, entry.line, entry.kind) == (str(tmp_path / "train.jsonl"), 3, "email")
    assert "jane.doe@example.com" not in entry.snippet
