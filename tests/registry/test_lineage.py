"""Lineage and erasure on real tiny runs: v1 trained on a file, v2 continued from v1 on other data, v3 apart.

`tunesmith lineage` shows base → v1 → v2 with data and evaluations; `--data` finds v1 (direct) and v2
(through its parent) by path, digest or prefix, never v3; `tunesmith erase` deletes the file and the copy
a redacting run trained on, lists the models, and with --delete-models deletes them too.
"""
import json

import pytest
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.data.hashing import file_sha256
from tunesmith.registry.lineage import LineageError, data_digest, find_run_dirs, lineage, trained_on
from tunesmith.train.sft import train

FACTS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("tin", "Sn")]
MORE = [("lead", "Pb"), ("copper", "Cu"), ("zinc", "Zn"), ("neon", "Ne")]


def write_rows(path, facts, contact: str = ""):
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {name}?{contact}"},
                          {"role": "assistant", "content": f"{symbol}."}]} for name, symbol in facts]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run(tiny_model_dir, data, out, **overrides):
    config = load_config(overrides={"model.base": str(tiny_model_dir), "data.train": data, "out": out,
                                    "train.max_steps": 1, "train.batch_size": 2, "lora.r": 4, **overrides})
    train(config)
    return out


@pytest.fixture
def runs(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    data.mkdir()
    first, second = write_rows(data / "first.jsonl", FACTS), write_rows(data / "second.jsonl", MORE)
    root = tmp_path / "runs"
    v1 = run(tiny_model_dir, first, root / "v1")
    v2 = run(tiny_model_dir, second, root / "v2", **{"model.parent": v1})  # continued: v1's weights live on in v2
    v3 = run(tiny_model_dir, second, root / "v3")
    return {"root": root, "first": first, "second": second, "v1": v1, "v2": v2, "v3": v3}


def test_the_tree_runs_from_the_base_through_the_parent_with_data(runs, tiny_model_dir):
    tree = lineage(runs["v2"]).to_json()
    assert tree["base_model"] == str(tiny_model_dir) and len(tree["base_model_sha256"]) == 64
    assert [step["run_dir"] for step in tree["chain"]] == [str(runs["v1"].resolve()), str(runs["v2"].resolve())]
    assert tree["chain"][1]["parent_run_dir"] == str(runs["v1"].resolve())
    assert tree["chain"][0]["data"][0]["sha256"] == file_sha256(runs["first"]) and tree["chain"][0]["data"][0]["rows"] == 4
    result = CliRunner().invoke(app, ["lineage", str(runs["v2"] / "model")])  # a run's model directory works too
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # long paths wrap: look for names
    assert "base " in text and text.count("data train:") == 2
    assert text.index("v1 ·") < text.index("first.jsonl") < text.index("v2 ·") < text.index("second.jsonl")


def test_data_finds_every_model_made_from_it_directly_or_through_a_parent(runs):
    found = {item.node.run_dir.name: item for item in trained_on(data_digest(str(runs["first"])), find_run_dirs([runs["root"]]))}
    assert set(found) == {"v1", "v2"}
    assert found["v1"].via is None and found["v2"].via == runs["v1"].resolve()
    by_prefix = CliRunner().invoke(app, ["lineage", "--data", file_sha256(runs["first"])[:10], "--runs",
                                         str(runs["root"]), "--json"])
    assert by_prefix.exit_code == 0, by_prefix.output
    listed = {item["run_dir"]: item["how"] for item in json.loads(by_prefix.stdout)["trained_models"]}
    assert listed == {str(runs["v1"].resolve()): "direct", str(runs["v2"].resolve()): "through a parent"}
    second = {item.node.run_dir.name for item in trained_on(file_sha256(runs["second"]), find_run_dirs([runs["root"]]))}
    assert second == {"v2", "v3"}


def test_unknown_references_say_what_to_pass(runs):
    with pytest.raises(LineageError, match="at least 8 hex digits"):
        data_digest("abc")
    result = CliRunner().invoke(app, ["lineage", str(runs["first"].parent)])
    assert result.exit_code == 1 and "not a tunesmith run directory" in " ".join(result.output.split())


def test_erase_deletes_the_data_and_lists_then_deletes_the_models(runs):
    first, root = runs["first"], runs["root"]
    digest = file_sha256(first)
    result = CliRunner().invoke(app, ["erase", "--data", str(first), "--runs", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["deleted_files"] == [str(first.resolve())] and not first.exists()
    assert {item["run_dir"] for item in report["trained_models"]} == {str(runs["v1"].resolve()), str(runs["v2"].resolve())}
    assert report["deleted_models"] == [] and runs["v1"].is_dir() and runs["v2"].is_dir()

    deleted = CliRunner().invoke(app, ["erase", "--data", digest, "--runs", str(root), "--delete-models"])
    assert deleted.exit_code == 0, deleted.output
    assert not runs["v1"].exists() and not runs["v2"].exists() and runs["v3"].is_dir()
    assert "deleted model" in deleted.stdout


def test_erase_reaches_the_redacted_copy_a_run_trained_on(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "people.jsonl", FACTS, contact=" Mail ada@example.com")
    out = run(tiny_model_dir, data, tmp_path / "runs" / "redacted", **{"data.pii": "redact"})
    copy = out / "redacted" / "train.jsonl"
    assert copy.is_file()
    result = CliRunner().invoke(app, ["erase", "--data", str(data), "--runs", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["deleted_files"]) == {str(data.resolve()), str(copy.resolve())}


def test_lineage_of_a_version_resolves_to_its_run(runs, tmp_path):
    from tunesmith.registry import keys
    from tunesmith.registry.db import Database

    home = tmp_path / "home"
    keys.create_key(Database(home / "tunesmith.sqlite"))
    for name in ("v1", "v2"):  # evaluated as an update leaves it, so it can be registered
        (runs[name] / "eval").mkdir(exist_ok=True)
        (runs[name] / "eval" / "update.json").write_text(json.dumps({"passed": True, "kept": [], "scores": {}}))
        registered = CliRunner().invoke(app, ["models", "register", "m", str(runs[name]), "--home", str(home)])
        assert registered.exit_code == 0, registered.output
    for ref, chain in (("m:latest", ["v1", "v2"]), ("m:1", ["v1"])):
        result = CliRunner().invoke(app, ["lineage", ref, "--home", str(home), "--json"])
        assert result.exit_code == 0, result.output
        assert [step["run_dir"] for step in json.loads(result.stdout)["chain"]] == [str(runs[n].resolve()) for n in chain]
    text = " ".join(CliRunner().invoke(app, ["lineage", "m:latest", "--home", str(home)]).stdout.split())
    assert text.index("v1 ·") < text.index("first.jsonl") < text.index("v2 ·") < text.index("second.jsonl")
    missing = CliRunner().invoke(app, ["lineage", "m:7", "--home", str(home)])
    assert missing.exit_code == 1 and "no such version" in missing.output
    no_home = CliRunner().invoke(app, ["lineage", "m:1"])
    assert no_home.exit_code == 1 and "pass the server's --home" in " ".join(no_home.output.split())


def test_an_exported_model_directory_carries_its_lineage(runs, tmp_path):
    import shutil

    exported = shutil.copytree(runs["v2"] / "model", tmp_path / "shipped" / "model")
    carried = json.loads((exported / "lineage.json").read_text())
    assert [entry["run_dir"] for entry in carried["chain"]] == [str(runs["v1"].resolve()), str(runs["v2"].resolve())]
    assert [entry["train_sha256"] for entry in carried["chain"]] == [file_sha256(runs["first"]), file_sha256(runs["second"])]
    assert "lineage.json" in (exported / "README.md").read_text()
    shutil.rmtree(runs["root"])  # the runs are gone; the copied model still says what made it
    result = CliRunner().invoke(app, ["lineage", str(exported), "--json"])
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)["chain"]
    assert [step["data"][0]["sha256"] for step in chain] == [file_sha256(runs["first"]), file_sha256(runs["second"])]
    assert chain[1]["parent_run_dir"] == str(runs["v1"].resolve())
