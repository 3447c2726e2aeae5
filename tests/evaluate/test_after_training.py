"""A training config that names a suite (`eval:`) is evaluated after training: reports in RUN/eval, gates decide the exit."""
import json

import yaml
from typer.testing import CliRunner

from tests.evaluate.conftest import SUITE, jsonl
from tunesmith.cli import app
from tunesmith.data.hashing import file_sha256

FACTS = [("What is the symbol for gold?", "Au"), ("What is the symbol for iron?", "Fe"),
         ("What is the symbol for tin?", "Sn"), ("What is the symbol for lead?", "Pb")]


def train_with_gates(workspace, name: str, tiny_model_dir, gates: list[dict]):
    """`tunesmith train` on a fresh run config in workspace/name whose suite has `gates`; (CLI result, out dir)."""
    root = workspace / name
    root.mkdir()
    chats = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in FACTS]
    jsonl(root / "train.jsonl", chats * 4)
    suite = workspace / f"suite-{name}.yaml"  # next to the workspace's task data
    suite.write_text(yaml.safe_dump(dict(SUITE, gates=gates)))
    config = {"out": str(root / "out"), "model": {"base": str(tiny_model_dir)},
              "data": {"train": str(root / "train.jsonl"), "max_length": 64},
              "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "log_every": 1},
              "eval": {"suite": str(suite)}}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    return CliRunner().invoke(app, ["train", str(root / "run.yaml")]), root / "out"


def test_training_with_an_eval_section_writes_the_report_in_the_run(workspace, tiny_model_dir):
    result, out = train_with_gates(workspace, "passing", tiny_model_dir, [{"metric": "general.perplexity", "max": 1e9}])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["passed"] and report["baseline"]["ref"] == str(tiny_model_dir)
    assert report["candidate"]["run"]["steps"] == 2  # the run just trained, with its lineage
    assert {task["name"] for task in report["tasks"]} == {t["name"] for t in SUITE["tasks"]}
    assert "training and validation loss" in (out / "eval" / "report.html").read_text()
    assert "evaluation report:" in result.stdout and "general.perplexity max passed" in " ".join(result.stdout.split())
    [entry] = json.loads((out / "run.json").read_text())["evaluations"]  # recorded with the report's hash
    assert entry["reports"]["json"] == {"path": "eval/report.json", "sha256": file_sha256(out / "eval" / "report.json")}
    card = (out / "model" / "README.md").read_text()  # the model card now holds the real numbers
    assert "model-index" in card and "all gates passed" in card


def test_a_failed_gate_after_training_exits_1_and_keeps_the_model(workspace, tiny_model_dir):
    result, out = train_with_gates(workspace, "failing", tiny_model_dir, [{"metric": "held_out.perplexity", "max": 1.0}])
    assert result.exit_code == 1
    assert "held_out.perplexity max FAILED" in " ".join(result.output.split())
    assert (out / "model" / "config.json").is_file()
    assert not json.loads((out / "eval" / "report.json").read_text())["passed"]


def test_a_broken_suite_fails_before_any_training(workspace, tiny_model_dir):
    result, out = train_with_gates(workspace, "broken", tiny_model_dir, [{"metric": "no_such_task.accuracy", "min": 0.5}])
    assert result.exit_code == 1
    assert "no_such_task" in " ".join(result.output.split())
    assert not out.exists()
