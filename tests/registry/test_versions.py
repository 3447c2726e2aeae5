"""Versions of a named model: numbering, parents, promotion only of passing versions, rollback as a stack."""
import json
from pathlib import Path

import pytest
import yaml

from tunesmith.registry import audit, keys, versions
from tunesmith.registry.db import Database
from tunesmith.registry.versions import VersionError


def evaluated_run(directory: Path, passed: bool, parent: Path | None = None) -> Path:
    """A run directory as training and evaluation leave it (run.json, config.yaml, eval/update.json)."""
    (directory / "eval").mkdir(parents=True)
    record = {"base_model": "tiny", "train_file": "facts.jsonl", "train_sha256": "0" * 64, "replay": None,
              "parent": {"run_dir": str(parent.resolve())} if parent else None}
    (directory / "run.json").write_text(json.dumps(record))
    (directory / "config.yaml").write_text(yaml.safe_dump({"model": {"base": "tiny"}}))
    gate = {"metric": "facts.accuracy", "passed": passed, "message": "gate facts.accuracy min_gain FAILED"}
    kept = {"passed": passed, "message": "keep s.facts.accuracy FORGOTTEN: lost 30 points"}
    (directory / "eval" / "update.json").write_text(json.dumps(
        {"passed": passed, "gain_gates": [gate], "kept": [kept], "scores": {}}))
    return directory


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "registry.sqlite")
    database.owner = keys.create_key(database)[0]
    return database


def test_versions_number_record_parents_and_only_passing_ones_are_promoted(db, tmp_path):
    v1 = versions.register_version(db, db.owner, "assistant", evaluated_run(tmp_path / "a", True), "os:test")
    assert (v1.id, v1.parent, v1.passed) == ("assistant:1", None, True)
    assert versions.promoted(db, db.owner, "assistant").number == 1
    v2 = versions.register_version(db, db.owner, "assistant", evaluated_run(tmp_path / "b", False, tmp_path / "a"), "os:test")
    assert (v2.number, v2.parent, v2.passed) == (2, 1, False)
    assert versions.resolve(db, db.owner, "assistant:latest").number == 1  # the failing one is not served
    with pytest.raises(VersionError, match="failed its gates .*FORGOTTEN"):
        versions.promote(db, db.owner, "assistant", 2, "os:test")
    assert versions.failures(v2) == ["gate facts.accuracy min_gain FAILED", "keep s.facts.accuracy FORGOTTEN: lost 30 points"]
    assert versions.resolve(db, "key-someone-else", "assistant:1") is None
    actions = [e["action"] for e in audit.entries(db) if e["object_id"].startswith("assistant:")]
    assert actions == ["model.version_registered", "model.promoted", "model.version_registered"]


def test_rollback_returns_to_the_version_served_before(db, tmp_path):
    for name, parent in (("a", None), ("b", "a"), ("c", "b")):
        versions.register_version(db, db.owner, "m", evaluated_run(tmp_path / name, True, parent and tmp_path / parent), "os:t")
    assert versions.promoted(db, db.owner, "m").number == 3
    assert versions.rollback(db, db.owner, "m", "os:t").number == 2
    assert versions.rollback(db, db.owner, "m", "os:t").number == 1
    with pytest.raises(VersionError, match="no earlier promoted version"):
        versions.rollback(db, db.owner, "m", "os:t")
    versions.promote(db, db.owner, "m", 3, "os:t")
    assert versions.resolve(db, db.owner, "m:latest").number == 3
    assert versions.rollback(db, db.owner, "m", "os:t").number == 1  # back to what was served before 3


def test_a_run_must_be_evaluated_and_its_parent_registered_first(db, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(VersionError, match="no run.json, config.yaml, eval/update.json"):
        versions.register_version(db, db.owner, "m", bare, "os:t")
    evaluated_run(tmp_path / "a", True)
    with pytest.raises(VersionError, match="no version of m: register that run first"):
        versions.register_version(db, db.owner, "m", evaluated_run(tmp_path / "b", True, tmp_path / "a"), "os:t")
    with pytest.raises(VersionError, match="model name"):
        versions.register_version(db, db.owner, "bad name", tmp_path / "a", "os:t")


def test_models_commands_register_list_refuse_promote_and_roll_back(tmp_path):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    home = tmp_path / "home"
    db = Database(home / "tunesmith.sqlite")
    keys.create_key(db)
    runner = CliRunner()
    a, b = evaluated_run(tmp_path / "a", True), evaluated_run(tmp_path / "b", False, tmp_path / "a")
    c = evaluated_run(tmp_path / "c", True, tmp_path / "a")
    assert runner.invoke(app, ["models", "register", "m", str(a), "--home", str(home)]).exit_code == 0
    failed = runner.invoke(app, ["models", "register", "m", str(b), "--home", str(home)])
    assert failed.exit_code == 1 and "m:latest stays m:1" in failed.output
    assert runner.invoke(app, ["models", "register", "m", str(c), "--home", str(home)]).exit_code == 0
    listed = runner.invoke(app, ["models", "list", "--home", str(home)]).output
    assert "m:3 (serving as latest)" in listed and "FORGOTTEN" in listed
    refused = runner.invoke(app, ["models", "promote", "m:2", "--home", str(home)])
    assert refused.exit_code == 1 and "failed its gates" in refused.output
    assert "m:latest is now m:1" in runner.invoke(app, ["models", "rollback", "m", "--home", str(home)]).output
    shown = runner.invoke(app, ["models", "show", "m:latest", "--home", str(home)]).output
    assert '"id": "m:1"' in shown
    # --from NAME:latest trains from the promoted version's run: its config names base "tiny", which this run
    # inherits (and, having no such model here, stops at)
    data = tmp_path / "x.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
    started = runner.invoke(app, ["train", "--from", "m:latest", "--home", str(home), "--data", str(data),
                                  "--out", str(tmp_path / "out")])
    assert started.exit_code == 1 and "model 'tiny' not found" in " ".join(started.output.split())


def test_models_scores_prints_every_task_after_every_version(tmp_path):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    home = tmp_path / "home"
    keys.create_key(Database(home / "tunesmith.sqlite"))
    u1, u2 = str(tmp_path / "u1" / "suite.yaml"), str(tmp_path / "u2" / "suite.yaml")  # gone: named by their folder
    a, b = evaluated_run(tmp_path / "a", True), evaluated_run(tmp_path / "b", False, tmp_path / "a")
    updates = {a: {"passed": True, "kept": [], "scores": {u1: {"facts": {"accuracy": 0.855}, "general": {"perplexity": 132.3}}}},
               b: {"passed": False, "kept": [{"suite": "u1", "task": "facts", "metric": "accuracy", "retired": False,
                                              "passed": False, "message": "keep u1.facts.accuracy FORGOTTEN"}],
                   "scores": {u2: {"facts": {"accuracy": 0.763}}, u1: {"facts": {"accuracy": 0.638},
                                                                      "general": {"perplexity": 105.8}}}}}
    for run, update in updates.items():
        (run / "eval" / "update.json").write_text(json.dumps(update))
        CliRunner().invoke(app, ["models", "register", "m", str(run), "--home", str(home)])
    result = CliRunner().invoke(app, ["models", "scores", "m", "--home", str(home)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").replace("┃", " ").split()) for line in result.output.splitlines()]
    assert ["version 1", "passed version 2", "suite.task.metric (latest) FAILED"] == lines[3:6]  # headers, bottom-aligned
    assert "u1.facts.accuracy 85.5% 63.8% ✗" in lines and "u1.general.perplexity 132.3 105.8" in lines
    assert "u2.facts.accuracy 76.3%" in lines  # measured by version 2 only
    missing = CliRunner().invoke(app, ["models", "scores", "nothing", "--home", str(home)])
    assert missing.exit_code == 1 and "no versions" in missing.output
