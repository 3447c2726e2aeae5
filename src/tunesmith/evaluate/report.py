"""Write an evaluation's results: report.json (every number), report.md and a self-contained report.html.

report.json records what was compared (model, data and suite sha256, resolved suite and run configs),
each task's metrics and details for baseline and candidate, the per-item answers side by side and every
gate's threshold and measured value. The markdown and HTML views are rendered from that dict alone.
"""
from __future__ import annotations

import datetime
import json
import math
import platform
from dataclasses import asdict
from pathlib import Path

import torch
import transformers

from tunesmith.data.hashing import file_sha256
from tunesmith.evaluate.runner import EvalResult
from tunesmith.evaluate.suite import KIND_METRICS
from tunesmith.evaluate.tasks import TaskRun
from tunesmith.train.metrics import METRICS_FILE


def side_by_side(baseline: TaskRun, candidate: TaskRun) -> list[dict]:
    """Per item: prompt, reference, both answers and whether each was right; regressions first."""
    items = []
    for base, cand in zip(baseline.rows, candidate.rows):
        item = {"id": base.get("id"), "prompt": base.get("prompt"), "reference": base.get("reference"),
                "baseline": base.get("prediction"), "candidate": cand.get("prediction"),
                "baseline_correct": base.get("correct"), "candidate_correct": cand.get("correct")}
        if "agreement" in cand:  # general prompts: the reference is the baseline's answer
            item |= {"reference": None, "agreement": cand["agreement"]}
        item["change"] = change_of(item)
        items.append(item)
    order = {"regressed": 0, "improved": 1, "same": 2}
    return sorted(items, key=lambda item: (order[item["change"]], item.get("agreement", 1.0)))


def change_of(item: dict) -> str:
    if "agreement" in item:
        return "same" if item["candidate_correct"] else "regressed"  # any change from the base answer
    if item["baseline_correct"] and not item["candidate_correct"]:
        return "regressed"
    if item["candidate_correct"] and not item["baseline_correct"]:
        return "improved"
    return "same"


def finite(value):
    """JSON has no NaN or infinity: write them as null (a gate on such a value has already failed)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def report_dict(result: EvalResult) -> dict:
    tasks = []
    for task in result.suite.tasks:
        base, cand = result.baseline_runs[task.name], result.candidate_runs[task.name]
        directions = KIND_METRICS[task.kind]
        tasks.append({
            "name": task.name, "kind": task.kind,
            "higher_is_better": {metric: direction > 0 for metric, direction in directions.items()},
            "baseline": {"metrics": base.metrics, "details": base.details, "seconds": base.seconds},
            "candidate": {"metrics": cand.metrics, "details": cand.details, "seconds": cand.seconds},
            "delta": {metric: cand.metrics[metric] - base.metrics[metric] for metric in cand.metrics},
            "items": side_by_side(base, cand),
        })
    return finite({
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "passed": result.passed,
        "suite": {"name": result.suite.name, "path": str(result.suite_path), "sha256": file_sha256(result.suite_path),
                  "resolved": result.suite.model_dump(mode="json"), "limit": result.limit},
        "candidate": asdict(result.candidate),
        "baseline": asdict(result.baseline),
        "data_sha256": result.data_sha256,
        "gates": [gate.to_dict() for gate in result.gates],
        "tasks": tasks,
        "seconds": result.seconds,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "machine": platform.machine(),
                        "weights": str(result.suite.decoding.dtype()).removeprefix("torch.")},  # decoding.bf16
    })


def number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(report: dict, samples: int = 5) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [f"# Evaluation: {report['suite']['name']} — {verdict}", "",
             f"- candidate: `{report['candidate']['ref']}` (sha256 `{report['candidate']['sha256'][:16]}…`)",
             f"- baseline: `{report['baseline']['ref']}` (sha256 `{report['baseline']['sha256'][:16]}…`)",
             f"- suite: `{report['suite']['path']}` (sha256 `{report['suite']['sha256'][:16]}…`)"
             + (f", limited to {report['suite']['limit']} items per task" if report["suite"]["limit"] else ""),
             f"- {report['created']}, {report['seconds']:.0f} s", "", "## Gates", ""]
    lines += [f"- {'✅' if gate['passed'] else '❌'} {gate['message']}" for gate in report["gates"]] or ["- (none)"]
    lines += ["", "## Metrics", "", "| task | metric | baseline | candidate | change |", "|---|---|---:|---:|---:|"]
    for task in report["tasks"]:
        for metric, value in task["candidate"]["metrics"].items():
            delta = task["delta"].get(metric)
            lines.append(f"| {task['name']} | {metric} | {number(task['baseline']['metrics'][metric])} | "
                         f"{number(value)} | {'n/a' if delta is None else f'{delta:+.4g}'} |")
    for task in report["tasks"]:
        if not task["items"]:
            continue
        lines += ["", f"## Samples: {task['name']} (regressions first)", "",
                  "| change | prompt | reference | baseline | candidate |", "|---|---|---|---|---|"]
        for item in task["items"][:samples]:
            cells = [item["change"], item["prompt"], item["reference"], item["baseline"], item["candidate"]]
            lines.append("| " + " | ".join(cell_text(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def cell_text(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")[:200]


def write_reports(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    from tunesmith.evaluate.html_report import html_report  # matplotlib only when writing

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(result)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    paths["md"].write_text(markdown(report))
    metrics_log = Path(result.candidate.run_dir) / METRICS_FILE if result.candidate.run_dir else None
    paths["html"].write_text(html_report(report, metrics_log))
    return paths
