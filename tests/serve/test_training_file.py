"""Uploaded training files: classification rows are accepted and reported as such, bad ones named by line,
and a validation file must be of the training file's kind, form and labels."""
import json

from tests.serve.server import write_chat_file
from tests.serve.test_api import api, upload  # noqa: F401  (api is a fixture)
from tunesmith.serve.training_file import check_training_file, is_classification_file


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


MULTI = [{"text": "how do I hurt someone", "labels": ["violence"]}, {"text": "how do I kill a stuck process", "labels": []},
         {"messages": [{"role": "user", "content": "you are worthless"}], "labels": ["harassment"]}]


def test_the_first_good_row_decides_the_kind(tmp_path):
    assert is_classification_file(write_rows(tmp_path / "a.jsonl", ["{oops", *MULTI]))
    assert not is_classification_file(write_chat_file(tmp_path / "chat.jsonl"))
    assert not is_classification_file(write_rows(tmp_path / "empty.jsonl", []))


def test_classification_reports_balance_and_refuses_mixed_validation(tmp_path):
    train = write_rows(tmp_path / "train.jsonl", MULTI)
    report = check_training_file(train, write_rows(tmp_path / "valid.jsonl", MULTI[:2]))
    assert report.ok and report.kind == "classification"
    assert report.files[0].format == "multi-label" and report.files[0].class_balance == {"harassment": 1, "violence": 1}
    assert report.files[0].unlabelled == 1 and report.files[1].role == "valid"

    unknown = check_training_file(train, write_rows(tmp_path / "v2.jsonl", [{"text": "x", "labels": ["violense"]}]))
    assert not unknown.ok and "did you mean 'violence'?" in unknown.errors[0]["hint"]
    single = check_training_file(train, write_rows(tmp_path / "v3.jsonl", [{"text": "x", "label": "violence"}]))
    assert "single-label rows, but the training file is multi-label" in single.errors[-1]["message"]
    mixed = check_training_file(train, write_chat_file(tmp_path / "chat.jsonl"))
    assert "the validation file has supervised rows" in mixed.errors[0]["message"]
    assert not check_training_file(write_chat_file(tmp_path / "c.jsonl"), train).ok


def test_upload_accepts_classification_rows_and_names_bad_ones(api, tmp_path):
    headers = api.key()
    stored = upload(api, headers, write_rows(tmp_path / "mod.jsonl", MULTI))
    assert stored.status_code == 200, stored.text
    check = api.get(f"/ui/api/files/{stored.json()['id']}/check", headers=headers).json()  # as the web UI reads it
    assert check["report"]["kind"] == "classification" and check["report"]["files"][0]["path"] == "train.jsonl"
    bad = write_rows(tmp_path / "bad.jsonl", [*MULTI, {"text": "", "labels": ["violence"]}, {"text": "a", "labels": "hate"}])
    refused = upload(api, headers, bad)  # stored as `uploaded`; the full check then refuses its rows
    assert refused.status_code == 200, refused.text
    check = api.get(f"/ui/api/files/{refused.json()['id']}/check", headers=headers).json()  # waits for the check
    assert check["status"] == "error", check
    assert "line 4, text: empty text" in check["status_details"] and "line 5, labels: expected a list" in check["status_details"]


def test_upload_of_reinforcement_prompts_is_processed_with_a_prompts_report(api, tmp_path):
    headers = api.key()
    rows = [{"messages": [{"role": "user", "content": f"What is {n} + {n}?"}], "answer": str(2 * n)} for n in range(3)]
    stored = upload(api, headers, write_rows(tmp_path / "rft.jsonl", rows))
    assert stored.status_code == 200, stored.text
    check = api.get(f"/ui/api/files/{stored.json()['id']}/check", headers=headers).json()  # waits for the check
    assert check["status"] == "processed", check
    assert [(f["kind"], f["path"], f["valid_rows"]) for f in check["report"]["files"]] == [("prompts", "train.jsonl", 3)]
