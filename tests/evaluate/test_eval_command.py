"""`tunesmith eval` end to end on tiny models: reports written, hashes recorded, gates decide the exit code."""
import json
import re

import yaml
from typer.testing import CliRunner

from tests.evaluate.conftest import SUITE
from tunesmith.cli import app
from tunesmith.data.hashing import file_sha256


def test_eval_writes_json_markdown_and_self_contained_html(workspace, tiny_model_dir):
    out = workspace / "report"
    result = CliRunner().invoke(app, ["eval", "--model", str(workspace / "run"), "--suite",
                                      str(workspace / "suite.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["baseline"]["ref"] == str(tiny_model_dir)
    assert report["candidate"]["sha256"] != report["baseline"]["sha256"]
    assert report["candidate"]["config"] == {"train": {"lr": 0.001}}
    assert len(report["data_sha256"]) == 6  # prompts.jsonl serves two tasks and len(report["suite"]["sha256"]) == 64
    tasks = {task["name"]: task for task in report["tasks"]}
    assert set(tasks) == {"facts", "mc", "held_out", "sentiment", "general", "speed"}
    assert tasks["general"]["baseline"]["metrics"]["agreement"] == 1.0
    assert [item["id"] for item in tasks["facts"]["items"]] and tasks["facts"]["items"][0]["baseline"] is not None
    assert tasks["sentiment"]["candidate"]["details"]["confusion"]["columns"] == ["pos", "neg", "(none)"]
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == 3  # loss curves, metric bars, confusion matrix
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    assert "training and validation loss" in page and "Sample generations" in page
    assert "| facts | accuracy |" in (out / "report.md").read_text()
    # the candidate is a run: the reports are in its lineage record, and its model card carries the numbers
    evaluations = json.loads((workspace / "run" / "run.json").read_text())["evaluations"]
    [entry] = [e for e in evaluations if e["reports"]["json"]["path"] == str((out / "report.json").resolve())]
    assert entry["reports"]["html"]["sha256"] == file_sha256(out / "report.html") and entry["suite"] == "tiny"
    card = (workspace / "run" / "model" / "README.md").read_text()
    assert "model-index" in card and "| facts | accuracy |" in card


def test_a_failing_gate_exits_nonzero_naming_gate_threshold_and_value(workspace, tiny_model_dir):
    suite = dict(SUITE, gates=[{"metric": "held_out.perplexity", "max": 1.5}, {"metric": "general.agreement", "min": 0.0}])
    (workspace / "failing.yaml").write_text(yaml.safe_dump(suite))
    result = CliRunner().invoke(app, ["eval", "--model", str(workspace / "run"), "--baseline", str(tiny_model_dir),
                                      "--suite", str(workspace / "failing.yaml"), "--out", str(workspace / "fail")])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert re.search(r"held_out\.perplexity max FAILED: measured [\d.e+]+ <= threshold 1\.5 required", output)
    assert "1 gate(s) failed" in output
    assert not json.loads((workspace / "fail" / "report.json").read_text())["passed"]


def test_eval_without_a_baseline_for_a_plain_model_dir_says_what_to_pass(workspace, tiny_model_dir):
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--suite", str(workspace / "suite.yaml"),
                                      "--out", str(workspace / "none")])
    assert result.exit_code == 1 and "pass --baseline" in " ".join(result.output.split())


def test_bf16_evaluation_scores_the_losses_as_float32_does_within_rounding(workspace):
    suite = yaml.safe_load((workspace / "suite.yaml").read_text())
    suite["decoding"]["bf16"] = True
    (workspace / "suite_bf16.yaml").write_text(yaml.safe_dump(suite))
    reports = {}
    for name, args in {"bf16": ["--suite", str(workspace / "suite_bf16.yaml")],  # the suite asks for it
                       "fp32": ["--suite", str(workspace / "suite.yaml"), "--fp32"]}.items():  # the flag overrides
        out = workspace / f"report_{name}"
        result = CliRunner().invoke(app, ["eval", "--model", str(workspace / "run"), *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((out / "report.json").read_text())
    assert reports["bf16"]["environment"]["weights"] == "bfloat16" and reports["fp32"]["environment"]["weights"] == "float32"
    for task, metric in [("held_out", "loss"), ("general", "loss")]:
        half, full = ({t["name"]: t for t in reports[n]["tasks"]}[task]["candidate"]["metrics"][metric] for n in reports)
        assert half != full and abs(half - full) < 0.02 * full  # bf16 weights, float32 sums: rounding only
