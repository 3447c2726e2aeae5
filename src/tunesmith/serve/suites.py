"""Evaluation after a fine-tuning job: the suite the job names, or a quick evaluation when it names none.

Run as: library code; put suites (`tunesmith eval`'s YAML, data paths relative to the file) in HOME/suites/NAME.yaml
and create a job with the extension field `"suite": "NAME"` (the web UI offers them in its new-job form).

A job that names no suite still gets a before/after report: a quick evaluation of held-out validation loss, the
base model (or the parent a job continues) before and the job's model after, on the job's validation file. It is
a one-task suite written into the job directory, so the report, the run record and the model card come from the
same code as any other evaluation. It needs a validation file of supervised rows (any format of
data/formats.py: a supervised job's); DPO and classification jobs without a suite get no report.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from tunesmith.evaluate.suite import SuiteError, load_suite
from tunesmith.serve.settings import ServeSettings

SUITE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
QUICK_SUITE_FILE = "quick-eval.yaml"
QUICK_EVAL_ROWS = 200  # a validation file's first rows: seconds of scoring for a 135M model on a CPU


def available_suites(settings: ServeSettings) -> dict[str, Path]:
    """Suite name → file, for every HOME/suites/NAME.yaml."""
    if not settings.suites_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(settings.suites_dir.glob("*.yaml")) if SUITE_NAME.match(path.stem)}


def suite_summary(name: str, path: Path) -> dict:
    """What the new-job form shows of a suite: its tasks and gates, or why it cannot be used."""
    try:
        suite = load_suite(path)
    except SuiteError as exc:
        return {"name": name, "error": str(exc)}
    return {"name": name, "title": suite.name, "tasks": [{"name": t.name, "kind": t.kind} for t in suite.tasks],
            "gates": [gate.metric for gate in suite.gates]}


def write_quick_suite(valid_path: Path, max_length: int, directory: Path) -> Path:
    """The one-task suite of a job without one: loss on its validation file (trained tokens only)."""
    suite = {"name": "quick evaluation (held-out validation loss)",
             "tasks": [{"kind": "loss", "name": "validation", "data": str(valid_path), "max_length": max_length,
                        "limit": QUICK_EVAL_ROWS}]}
    path = directory / QUICK_SUITE_FILE
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path
