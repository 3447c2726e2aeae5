"""run.json as a lineage record: a real tiny run records its base weights, data, code, machine, person and
time, and writes the model card; data.pii refuses, redacts or allows; an evaluation is added with its hashes."""
import json
import re

import pytest
import yaml

from tunesmith.config import ConfigError, load_config
from tunesmith.data.hashing import file_sha256
from tunesmith.data.pii_policy import PersonalDataRefused
from tunesmith.train.provenance import base_weights_sha256, os_user
from tunesmith.train.run_record import REDACTED_DIR, add_evaluation, guard_personal_data, read_run_record
from tunesmith.train.sft import train

ROWS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("tin", "Sn")]


def write_rows(path, contact: str | None = None):
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {name}?"},
                          {"role": "assistant", "content": f"{symbol}."}]} for name, symbol in ROWS]
    if contact:
        rows[2]["messages"][0]["content"] += f" Write to {contact}"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def config_for(tiny_model_dir, root, **overrides):
    return load_config(overrides={"model.base": str(tiny_model_dir), "data.train": root / "train.jsonl",
                                  "out": root / "run", "train.max_steps": 2, "train.batch_size": 2, "lora.r": 4,
                                  **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("record")
    write_rows(root / "train.jsonl")
    train(config_for(tiny_model_dir, root), started_by="key-test")
    return root


def test_the_record_pins_base_data_code_machine_person_and_time(finished_run, tiny_model_dir):
    record = read_run_record(finished_run / "run")
    assert record["base_model"] == str(tiny_model_dir)
    assert record["base_model_sha256"] == base_weights_sha256(str(tiny_model_dir)) and len(record["base_model_sha256"]) == 64
    assert record["parent"] is None
    [entry] = record["data"]
    assert entry["role"] == "train" and entry["rows"] == 4 and entry["sha256"] == file_sha256(finished_run / "train.jsonl")
    assert entry["pii"]["policy"] == "refuse" and entry["pii"]["findings"] == {}
    assert record["train_sha256"] == entry["sha256"]  # the flat keys older readers use
    assert record["config"]["lora"]["r"] == 4 and record["config"]["data"]["pii"] == "refuse"
    assert record["tunesmith_version"] and re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["code_revision"])
    assert record["machine"]["world_size"] == 1 and record["machine"]["cpu"]
    assert record["started_at"] <= record["finished_at"] and record["started_by"] == "key-test"
    assert record["evaluations"] == [] and record["finished"] is True
    card = (finished_run / "run" / "model" / "README.md").read_text()  # written at export
    assert f"sha256:{entry['sha256']}" in card and "by key-test" in card


def test_the_os_user_starts_a_run_nobody_named(tmp_path, tiny_model_dir):
    write_rows(tmp_path / "train.jsonl")
    train(config_for(tiny_model_dir, tmp_path, **{"train.max_steps": 1}))
    assert read_run_record(tmp_path / "run")["started_by"] == os_user()


def test_refuse_names_each_finding_by_line_and_field(tmp_path, tiny_model_dir):
    write_rows(tmp_path / "train.jsonl", contact="ada@example.com or +44 20 7946 0958")
    config = config_for(tiny_model_dir, tmp_path)
    with pytest.raises(PersonalDataRefused) as refused:
        guard_personal_data(config, tmp_path / "run")
    message = str(refused.value)
    assert f"{tmp_path / 'train.jsonl'}:3: messages[0].content: email" in message
    assert f"{tmp_path / 'train.jsonl'}:3: messages[0].content: phone" in message
    assert "data.pii: redact" in message and "ada@example.com" not in message
    with pytest.raises(PersonalDataRefused):  # the recipe refuses before it loads anything
        train(config)


def test_redact_trains_on_a_redacted_copy_and_records_both_files(tmp_path, tiny_model_dir):
    original = write_rows(tmp_path / "train.jsonl", contact="ada@example.com")
    train(config_for(tiny_model_dir, tmp_path, **{"data.pii": "redact", "train.max_steps": 1}))
    copy = tmp_path / "run" / REDACTED_DIR / "train.jsonl"
    assert "<EMAIL_1>" in copy.read_text() and "ada@example.com" not in copy.read_text()
    [entry] = read_run_record(tmp_path / "run")["data"]
    assert entry["path"] == str(copy) and entry["sha256"] == file_sha256(copy)
    assert entry["source"] == {"path": str(original), "sha256": file_sha256(original)}
    assert entry["pii"]["findings"] == {"email": 1} and entry["pii"]["redacted"]["email"] == 1
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["train"] == str(original)


def test_allow_trains_on_the_file_as_it_is_and_counts_its_findings(tmp_path, tiny_model_dir):
    write_rows(tmp_path / "train.jsonl", contact="ada@example.com")
    config, outcomes = guard_personal_data(config_for(tiny_model_dir, tmp_path, **{"data.pii": "allow"}), tmp_path)
    assert config.data.train == tmp_path / "train.jsonl" and outcomes["train"].findings == {"email": 1}
    assert not (tmp_path / REDACTED_DIR).exists()


def test_an_unknown_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.pii"):
        load_config(overrides={"data.pii": "hide"})


def test_an_evaluation_is_recorded_with_the_hash_of_each_report(finished_run):
    run = finished_run / "run"
    eval_dir = run / "eval"
    eval_dir.mkdir(exist_ok=True)
    report = {"suite": {"name": "tiny", "sha256": "ab" * 32}, "passed": True, "gates": [],
              "tasks": [{"kind": "qa", "name": "symbols", "baseline": {"metrics": {"accuracy": 0.25}},
                         "candidate": {"metrics": {"accuracy": 0.75}}, "delta": {"accuracy": 0.5}}]}
    (eval_dir / "report.json").write_text(json.dumps(report))
    (eval_dir / "report.md").write_text("# tiny\n")
    entry = add_evaluation(run, {"json": eval_dir / "report.json", "md": eval_dir / "report.md"})
    assert entry["reports"]["json"] == {"path": "eval/report.json", "sha256": file_sha256(eval_dir / "report.json")}
    assert entry["suite"] == "tiny" and entry["passed"] is True
    add_evaluation(run, {"json": eval_dir / "report.json"})  # evaluated again to the same place: replaced
    assert len(read_run_record(run)["evaluations"]) == 1
    card = (run / "model" / "README.md").read_text()
    assert "| symbols | accuracy | 0.25 | 0.75 | +0.5 |" in card and "model-index" in card
