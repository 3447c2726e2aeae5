"""The forgetting gate on the real embedded model: a deliberately destructive run must be stopped (exit 1)."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tunesmith.cli import app

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_destructive_full_finetune_trips_the_forgetting_gate(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the example config names its data and suite relative to the repository
    torch.set_num_threads(2)
    try:
        result = CliRunner().invoke(app, ["train", "examples/elements/destructive.yaml", "--out", str(tmp_path / "run")])
    finally:
        torch.set_num_threads(1)
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "run" / "eval" / "report.json").read_text())
    gates = {gate["metric"]: gate for gate in report["gates"]}
    assert not gates["general.perplexity"]["passed"], gates
    general = next(task for task in report["tasks"] if task["name"] == "general")
    assert general["candidate"]["metrics"]["perplexity"] > 1.40 * general["baseline"]["metrics"]["perplexity"]
    assert "general.perplexity max_forgetting FAILED" in " ".join(result.output.split())
    assert (tmp_path / "run" / "model" / "config.json").is_file()  # the model is kept for inspection
    card = (tmp_path / "run" / "model" / "README.md").read_text()  # its model card carries the real evaluation
    perplexity = general["candidate"]["metrics"]["perplexity"]
    assert f"{perplexity:.4g}" in card and "a gate FAILED" in card and "- FAILED: " in card
