"""`tunesmith eval`: run a suite on the baseline, then on the candidate, then check the gates.

Run as: tunesmith eval --model runs/elements-demo --suite examples/suites/elements.yaml --out runs/elements-demo/eval

The baseline defaults to the candidate run's base model (run.json `base_model`). The baseline runs
first so the `general` task can compare the candidate's answers with the baseline's.
"""
from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from rich.console import Console

from tunesmith.data.hashing import file_sha256
from tunesmith.evaluate.gates import GateResult, check_gates
from tunesmith.evaluate.suite import Suite, load_suite
from tunesmith.evaluate.tasks import TaskRun, run_task
from tunesmith.models.classifier import is_classifier_dir, load_classifier
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.models.packed_linear import packed_for_inference
from tunesmith.models.resolve import resolve_model_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin")


class NoBaselineError(ValueError):
    """No --baseline was given and the candidate is not a run whose run.json names its base model."""


@dataclass
class ModelInfo:
    ref: str
    directory: str
    sha256: str  # over config.json and the weight files, in name order
    run_dir: str | None = None  # set when ref is a tunesmith run directory
    run: dict | None = None  # its run.json
    config: dict | None = None  # its resolved config.yaml


@dataclass
class EvalResult:
    suite: Suite
    suite_path: Path
    candidate: ModelInfo
    baseline: ModelInfo
    candidate_runs: dict[str, TaskRun]
    baseline_runs: dict[str, TaskRun]
    gates: list[GateResult]
    seconds: float
    limit: int | None = None
    data_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)


def is_run_dir(ref: str) -> bool:
    return (Path(ref) / "run.json").is_file()


def default_baseline(model_ref: str) -> str:
    """The base model a tunesmith run was trained from."""
    if not is_run_dir(model_ref):
        raise NoBaselineError(f"{model_ref} is not a tunesmith run directory (no run.json): pass --baseline")
    base = json.loads((Path(model_ref) / "run.json").read_text()).get("base_model")
    if not base:
        raise NoBaselineError(f"{model_ref}/run.json names no base_model: pass --baseline")
    return str(base)


def model_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    for path in files:
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def describe_model(ref: str) -> ModelInfo:
    directory = resolve_model_dir(ref)
    info = ModelInfo(ref, str(directory), model_sha256(directory))
    if is_run_dir(ref):
        run_dir = Path(ref)
        info.run_dir = str(run_dir)
        info.run = json.loads((run_dir / "run.json").read_text())
        if (run_dir / "config.yaml").is_file():
            info.config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return info


def load_for_eval(ref: str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer): a classifier directory (classifier.json) as a `Classifier`, else the causal LM in `dtype`."""
    directory = resolve_model_dir(ref)
    if is_classifier_dir(directory):
        classifier = load_classifier(directory)
        return classifier, classifier.tokenizer
    return packed_for_inference(load_model(ref, dtype=dtype).eval()), load_tokenizer(ref)  # models/packed_linear.py


def evaluate_model(ref: str, suite: Suite, console: Console, label: str,
                   references: dict[str, TaskRun] | None = None) -> dict[str, TaskRun]:
    model, tokenizer = load_for_eval(ref, suite.decoding.dtype())
    runs = {}
    for task in suite.tasks:
        console.print(f"[bold]{label}[/] {task.name} ({task.kind})")
        reference = references.get(task.name) if references else None
        runs[task.name] = run_task(task, model, tokenizer, suite.decoding, reference, progress=console.is_terminal)
    del model
    gc.collect()
    return runs


def apply_limit(suite: Suite, limit: int | None) -> None:
    """Cap every task that reads items at `limit` (a quick look; the report records it)."""
    if limit is None:
        return
    for task in suite.tasks:
        if hasattr(task, "limit"):
            task.limit = min(task.limit or limit, limit)


def run_eval(model_ref: str, suite_path: Path, baseline_ref: str | None = None, limit: int | None = None,
             console: Console | None = None, bf16: bool | None = None) -> EvalResult:
    """`bf16`, when given, overrides the suite's decoding.bf16 (the report records what ran)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    suite = load_suite(suite_path)
    apply_limit(suite, limit)
    if bf16 is not None:
        suite.decoding.bf16 = bf16
    baseline_ref = baseline_ref or default_baseline(model_ref)
    candidate, baseline = describe_model(model_ref), describe_model(baseline_ref)
    baseline_runs = evaluate_model(baseline_ref, suite, console, "baseline")
    candidate_runs = evaluate_model(model_ref, suite, console, "candidate", references=baseline_runs)
    kinds = {task.name: task.kind for task in suite.tasks}
    gates = check_gates(suite.gates, kinds,
                        {name: run.metrics for name, run in candidate_runs.items()},
                        {name: run.metrics for name, run in baseline_runs.items()})
    data = {str(path): file_sha256(path) for path in suite.data_files()}
    return EvalResult(suite, Path(suite_path), candidate, baseline, candidate_runs, baseline_runs, gates,
                      time.perf_counter() - started, limit, data)
