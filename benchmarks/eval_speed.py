"""The demo's before/after evaluation, timed: bf16 weights (the default where the hardware has bf16 matmuls) and
float32 side by side, per task and per model, with the scores each gives; prints JSON (issue 14's evaluation targets).

Run as: .venv/bin/python benchmarks/eval_speed.py [--run runs/elements-demo] [--suite examples/suites/elements.yaml]
        [--sides bf16,fp32] [--threads 2] [--out FILE]

The run is a finished `tunesmith demo` (or `tunesmith train examples/elements/demo.yaml`) directory. Each side is
`tunesmith eval`'s own code path (evaluate/runner.py `run_eval`): the baseline (the run's base model) and then the
candidate, every task of the suite, model loads included; nothing is cached between sides. Targets: the whole
evaluation (both models, all tasks) under 90 s, and 500 short QA items under 30 s per model (the QA task's seconds
scaled to 500 items).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console

from tunesmith.evaluate.runner import run_eval

from json_report import emit

REPO = Path(__file__).resolve().parents[1]
TARGET_TOTAL_S, TARGET_QA_500_S = 90.0, 30.0


def side(run: Path, suite: Path, bf16: bool, console: Console) -> dict:
    started = time.perf_counter()
    result = run_eval(str(run), suite, console=console, bf16=bf16)
    total = time.perf_counter() - started
    tasks = {}
    for name, kind in ((task.name, task.kind) for task in result.suite.tasks):
        entry = {"kind": kind}
        for label, runs in (("baseline", result.baseline_runs), ("candidate", result.candidate_runs)):
            entry[label] = {"seconds": round(runs[name].seconds, 2), "metrics": runs[name].metrics}
            if kind == "qa":
                items = len(runs[name].rows)
                entry[label] |= {"items": items, "seconds_per_500": round(500 * runs[name].seconds / items, 2)}
        tasks[name] = entry
    qa_500 = [t[m]["seconds_per_500"] for t in tasks.values() if t["kind"] == "qa" for m in ("baseline", "candidate")]
    return {"weights": "bfloat16" if bf16 else "float32", "total_s": round(total, 2),
            "tasks_s": round(sum(t[m]["seconds"] for t in tasks.values() for m in ("baseline", "candidate")), 2),
            "gates_passed": result.passed, "tasks": tasks,
            "targets": {f"total_under_{TARGET_TOTAL_S:g}s": total < TARGET_TOTAL_S,
                        f"qa_500_items_under_{TARGET_QA_500_S:g}s_per_model":
                            bool(qa_500) and max(qa_500) < TARGET_QA_500_S}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "elements-demo")
    parser.add_argument("--suite", type=Path, default=REPO / "examples" / "suites" / "elements.yaml")
    parser.add_argument("--sides", default="bf16,fp32", help="comma-separated: bf16, fp32 (run in this order)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"{args.run} is not a finished run (no run.json): run `tunesmith demo` first, or pass --run")
    console = Console(stderr=True)
    load_before = os.getloadavg()
    sides = {name: side(args.run, args.suite, name == "bf16", console) for name in args.sides.split(",")}
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": str(args.run),
              "suite": str(args.suite), "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "sides": sides}
    if {"bf16", "fp32"} <= set(sides):
        report["bf16_speedup"] = round(sides["fp32"]["total_s"] / sides["bf16"]["total_s"], 2)
    emit(report, args.out)


if __name__ == "__main__":
    main()
