"""Evaluate a finished run on the suite its config names (`eval.suite`): base model before, run after.

Run as: tunesmith train CONFIG.yaml   (with an `eval:` section; the demo config has one)

The suite is checked before training starts, so a typo in it never costs a training run. After training
the base model (the baseline, i.e. "before") and the run's model ("after") answer the same prompts with
the same decoding; the reports land in RUN_DIR/eval/ (report.json, report.md, report.html), are recorded
with their SHA-256 in RUN_DIR/run.json, and the model card (RUN_DIR/model/README.md) is written again with
the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tunesmith.config import RunConfig
from tunesmith.evaluate.gates import GateResult
from tunesmith.evaluate.report import write_reports
from tunesmith.evaluate.runner import EvalResult, is_run_dir, run_eval
from tunesmith.evaluate.suite import Suite, load_suite
from tunesmith.train.run_record import add_evaluation


@dataclass
class RunEvaluation:
    result: EvalResult
    reports: dict[str, Path]  # json, md, html

    @property
    def passed(self) -> bool:
        return self.result.passed


def check_eval_suite(config: RunConfig) -> Suite | None:
    """Load and validate the configured suite (raises SuiteError with the reason)."""
    if config.eval.suite is None:
        return None
    return load_suite(config.eval.suite)


def evaluate_run(config: RunConfig, run_dir: Path, console: Console) -> RunEvaluation | None:
    """Baseline = the run's parent (an update is judged against the version it updates), else its base model;
    candidate = the run. None when the config names no suite."""
    if config.eval.suite is None:
        return None
    baseline = str(config.model.parent.run) if config.model.parent is not None else config.model.base
    console.print(f"[bold]evaluating[/] {run_dir} against {baseline} on {config.eval.suite}")
    result = run_eval(str(run_dir), config.eval.suite, baseline_ref=baseline, limit=config.eval.limit,
                      console=console)
    return RunEvaluation(result, write_recorded_reports(result, str(run_dir), Path(run_dir) / "eval"))


def write_recorded_reports(result: EvalResult, candidate_ref: str, out: Path) -> dict[str, Path]:
    """Write the reports; when the candidate is a run directory, add them to its run.json and model card."""
    paths = write_reports(result, out)
    if is_run_dir(candidate_ref):
        add_evaluation(candidate_ref, paths)
    return paths


def print_gates(gates: list[GateResult], console: Console) -> None:
    for gate in gates:
        console.print(("[green]" if gate.passed else "[bold red]") + gate.describe(), markup=True, highlight=False)


def failed_gates_message(gates: list[GateResult]) -> str:
    failed = [gate for gate in gates if not gate.passed]
    return f"{len(failed)} gate(s) failed: " + "; ".join(gate.describe() for gate in failed)
