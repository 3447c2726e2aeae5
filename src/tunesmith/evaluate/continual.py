"""The gates of an update: gain on its own suite, and nothing lost on the suites of every ancestor.

Run as: tunesmith train examples/continual/u2.yaml   (a run with model.parent and eval.suite; writes RUN/eval/update.json)

An update (a run with `model.parent`) names its new-data suite in `eval.suite`; that suite's own gates
are checked with the parent as the baseline (did the update add what it was for?). Then the update must
keep what every ancestor learned: the candidate answers each ancestor's suite (found through the run.json
parent chain and each ancestor's config.yaml), and every score is compared with the BEST any ancestor
recorded for it — not just the parent's, so small losses cannot creep in one update at a time:

- accuracy and macro_f1 may fall at most `eval.max_points_lost` points (0.02 of accuracy = 2 points);
- perplexity may rise at most `eval.max_points_lost` percent.

Other metrics (speed, agreement with a reference, loss beside perplexity) are not knowledge an update
keeps and are left out. Tasks named in `eval.retired` (`SUITE.TASK`: facts this update corrects on
purpose) are measured and reported but not gated. A root run (no parent) records its scores the same
way, so its children have something to keep. RUN/eval/update.json holds every score this run measured
on every suite (the record its own descendants compare with), each kept comparison, and `passed`. An
update's run.json records it with its SHA-256, the suites measured and the ancestors' update.json files it
was compared with (a root run's scores are its report.json's, recorded already; its children pin its file).
"""
from __future__ import annotations

import gc
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from tunesmith.config import RunConfig
from tunesmith.evaluate.after_training import RunEvaluation, evaluate_run
from tunesmith.evaluate.suite import Suite, load_suite
from tunesmith.evaluate.tasks import run_task
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.models.packed_linear import packed_for_inference
from tunesmith.train.parent import ParentRun, ancestors
from tunesmith.train.run_record import add_update_evaluation

UPDATE_FILE = "update.json"
POINTS = {"accuracy", "macro_f1"}  # bounded scores: points lost = 100 × (best − candidate)
PERCENT = {"perplexity"}  # rises: percent = 100 × (candidate − best) / best

Scores = dict[str, dict[str, dict[str, float]]]  # suite path → task → metric → value


@dataclass
class KeptResult:
    suite: str  # the suite's name (as `eval.retired` names it)
    task: str
    metric: str
    best: float
    best_run: str  # the ancestor that recorded the best value
    candidate: float
    lost: float  # points (accuracy-like) or percent (perplexity); negative = improved
    threshold: float
    retired: bool
    passed: bool

    def describe(self) -> str:
        unit = "%" if self.metric in PERCENT else " points"
        verdict = "retired (not gated)" if self.retired else ("kept" if self.passed else "FORGOTTEN")
        return (f"keep {self.suite}.{self.task}.{self.metric} {verdict}: {self.candidate:.4g} vs best {self.best:.4g} "
                f"({self.best_run}), lost {self.lost:+.2f}{unit}, at most {self.threshold:g}{unit} allowed")


@dataclass
class UpdateEvaluation:
    gain: RunEvaluation  # the run's own suite, baseline = the parent (or the base model for a root run)
    kept: list[KeptResult] = field(default_factory=list)
    scores: Scores = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.gain.passed and all(k.passed for k in self.kept)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "gain_passed": self.gain.passed,
                "gain_gates": [gate.to_dict() for gate in self.gain.result.gates],
                "kept": [asdict(k) | {"message": k.describe()} for k in self.kept], "scores": self.scores,
                "report": str(self.gain.reports["json"])}


def scores_of(suite: Suite, metrics_by_task: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The keepable metrics of each task."""
    return {task: {m: v for m, v in metrics.items() if m in POINTS | PERCENT}
            for task, metrics in metrics_by_task.items() if any(m in POINTS | PERCENT for m in metrics)}


def recorded_scores(run_dir: Path) -> Scores:
    """What a run recorded in its eval/update.json ({} for a run evaluated without it)."""
    path = Path(run_dir) / "eval" / UPDATE_FILE
    return json.loads(path.read_text())["scores"] if path.is_file() else {}


def ancestor_suites(lineage: list[ParentRun]) -> list[Path]:
    """Each ancestor's eval.suite, nearest ancestor first, once each."""
    suites: list[Path] = []
    for ancestor in lineage:
        suite = (ancestor.config.get("eval") or {}).get("suite")
        if suite and Path(suite).resolve() not in suites:
            suites.append(Path(suite).resolve())
    return suites


def measure_suites(model_ref: str, suites: list[Path], console: Console) -> Scores:
    """The candidate's keepable scores on each suite, one model load for all of them.

    In bf16 only when every suite's decoding asks for it (kept scores compare with what ancestors recorded)."""
    loaded = [(path, load_suite(path)) for path in suites]
    bf16 = all(suite.decoding.dtype() == torch.bfloat16 for _, suite in loaded)
    model = packed_for_inference(load_model(model_ref, dtype=torch.bfloat16 if bf16 else torch.float32).eval())
    tokenizer = load_tokenizer(model_ref)
    scores: Scores = {}
    for path, suite in loaded:
        metrics = {}
        for task in suite.tasks:
            if task.kind in ("speed",):
                continue
            console.print(f"[bold]keep[/] {suite.name}.{task.name} ({task.kind})")
            metrics[task.name] = run_task(task, model, tokenizer, suite.decoding, progress=console.is_terminal).metrics
        scores[str(path)] = scores_of(suite, metrics)
    del model
    gc.collect()
    return scores


def kept_results(scores: Scores, lineage: list[ParentRun], threshold: float, retired: list[str]) -> list[KeptResult]:
    """Each score on an ancestor suite against the best any ancestor recorded for it."""
    recorded = [(ancestor.run_dir, recorded_scores(ancestor.run_dir)) for ancestor in lineage]
    results = []
    for suite_path, tasks in scores.items():
        name = load_suite(Path(suite_path)).name
        for task, metrics in tasks.items():
            for metric, value in metrics.items():
                history = [(run[suite_path][task][metric], run_dir) for run_dir, run in recorded
                           if metric in run.get(suite_path, {}).get(task, {})]
                if not history:
                    continue  # no ancestor measured it (a task added to the suite later): nothing to keep
                higher_is_better = metric in POINTS
                best, best_run = (max if higher_is_better else min)(history, key=lambda h: h[0])
                lost = 100 * (best - value) if higher_is_better else 100 * (value - best) / best
                is_retired = f"{name}.{task}" in retired
                results.append(KeptResult(name, task, metric, best, str(best_run), value, lost, threshold,
                                          is_retired, is_retired or lost <= threshold))
    return results


def evaluate_update(config: RunConfig, run_dir: Path, console: Console) -> UpdateEvaluation | None:
    """Gain on the run's suite (vs its parent), kept on its ancestors' suites; writes RUN/eval/update.json."""
    gain = evaluate_run(config, run_dir, console)
    if gain is None:
        return None
    suite = gain.result.suite
    own = {str(Path(config.eval.suite).resolve()): scores_of(suite, {name: run.metrics for name, run
                                                                      in gain.result.candidate_runs.items()})}
    evaluation = UpdateEvaluation(gain, scores=own)
    lineage = ancestors(config.model.parent.run) if config.model.parent is not None else []
    if lineage:
        earlier = [path for path in ancestor_suites(lineage) if str(path) not in own]
        evaluation.scores |= measure_suites(str(run_dir), earlier, console)
        evaluation.kept = kept_results(evaluation.scores, lineage, config.eval.max_points_lost, config.eval.retired)
    report = Path(run_dir) / "eval" / UPDATE_FILE
    report.write_text(json.dumps(evaluation.to_dict(), indent=2))
    if lineage:  # run.json and the card: the verdict, the suites measured, the ancestors' records, with digests
        add_update_evaluation(run_dir, report, {load_suite(Path(path)).name: Path(path) for path in evaluation.scores},
                              [ancestor.run_dir / "eval" / UPDATE_FILE for ancestor in lineage])
    return evaluation
