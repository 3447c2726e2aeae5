"""The main job: finetune the embedded model on element facts and prove the held-out gain.

Run as: tunesmith demo

Train with LoRA (examples/elements/demo.yaml) → evaluate the base model and the finetuned one on the
elements suite (held-out phrasings, validation loss, general-English forgetting check, speed) → gates →
report.html in the run directory → print the before/after table.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunesmith.config import load_config
from tunesmith.evaluate.after_training import RunEvaluation, check_eval_suite, evaluate_run
from tunesmith.train.sft import train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QA_TASK = "elements"  # the suite's held-out question task


@dataclass
class DemoResult:
    evaluation: RunEvaluation
    run_dir: Path
    seconds: float


def run_demo(out: Path, console: Console, examples: Path = EXAMPLES, eval_limit: int | None = None,
             overrides: dict | None = None) -> DemoResult:
    started = time.perf_counter()
    config = load_config(examples / "elements" / "demo.yaml", {"out": out, **(overrides or {})})
    config.data.train, config.data.valid = examples / "elements" / "train.jsonl", examples / "elements" / "valid.jsonl"
    if config.data.replay is not None and config.data.replay.general_text is not None:  # named from the repo root
        config.data.replay.general_text = examples / config.data.replay.general_text.relative_to("examples")
    config.eval.suite, config.eval.limit = examples / "suites" / "elements.yaml", eval_limit
    check_eval_suite(config)
    if out.exists():
        shutil.rmtree(out)
    result = train(config, console=console)
    evaluation = evaluate_run(config, result.run_dir, console)
    return DemoResult(evaluation, result.run_dir, time.perf_counter() - started)


def gain_table(result: DemoResult) -> Table:
    table = Table(title="Held-out accuracy (question phrasings never seen in training)")
    table.add_column("questions")
    table.add_column("base", justify="right")
    table.add_column("finetuned", justify="right")
    table.add_column("gain", justify="right")
    before = result.evaluation.result.baseline_runs[QA_TASK]
    after = result.evaluation.result.candidate_runs[QA_TASK]
    rows = [("all", before.metrics["accuracy"], after.metrics["accuracy"])]
    rows += [(name, acc, after.details["by_relation"].get(name, 0.0))
             for name, acc in before.details["by_relation"].items()]
    for name, base, tuned in rows:
        table.add_row(name, f"{base:.1%}", f"{tuned:.1%}", f"{(tuned - base) * 100:+.1f} pts")
    return table
