"""How close `tunesmith estimate --probe` comes to a real run: predicted vs measured time and peak memory, as JSON.

Run as: .venv/bin/python benchmarks/estimate_accuracy.py [--config examples/elements/demo.yaml] [--max-steps 30]

Both sides run in their own child process, one after the other, on the same config (its `eval:` section
dropped, `train.max_steps` set): first `tunesmith estimate CONFIG --probe --json`, then `tunesmith train
CONFIG`. Measured time is the training child's whole wall time (imports, data, model load, steps,
validation, checkpoints, export), which is what the estimate's total time covers; measured memory is that
child's peak RSS (os.wait4's ru_maxrss). The issue's bound is ±25% for both. Run it on a quiet machine:
another process on the same cores slows one side and not the other.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from json_report import emit

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tunesmith.cli"]


def run_child(command: list[str], log: Path, compile_cache: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in bytes, stdout of one child process. Each child gets its own empty inductor cache:
    the probe's warm-up compiles the layers (train.compile), and a training run reading what the probe compiled
    would skip a cost the estimate rightly predicts for a run on its own."""
    started = time.perf_counter()
    with open(log, "w") as stderr:
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                 env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(compile_cache)})
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log}")
    return seconds, usage.ru_maxrss * 1024, stdout  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "elements" / "demo.yaml")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tunesmith-estimate-") as tmp:
        work = Path(tmp)
        config = yaml.safe_load(args.config.read_text())
        config.pop("eval", None)  # time training alone
        config["out"] = str(work / "run")
        config.setdefault("train", {})["max_steps"] = args.max_steps
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))

        _, _, printed = run_child(CLI + ["estimate", str(config_path), "--probe", "--json"], work / "estimate.log",
                                  work / "inductor-estimate")
        estimate = json.loads(printed)
        predicted = estimate["scenarios"][0]  # the configured method
        measured_s, measured_rss, _ = run_child(CLI + ["train", str(config_path)], work / "train.log",
                                                work / "inductor-train")
        steps = json.loads((work / "run" / "run.json").read_text())["steps"]

    result = {
        "benchmark": "estimate_accuracy",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average": os.getloadavg()},
        "config": str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config),
        "method": predicted["method"],
        "steps": steps,
        "probe": {k: estimate["probe"][k] for k in ("steps", "warmup_steps", "seconds", "tokens_per_s")},
        "time_s": {"predicted": round(predicted["total_seconds"], 1), "measured": round(measured_s, 1),
                   "error": round(predicted["total_seconds"] / measured_s - 1, 3)},
        "peak_memory_gb": {"predicted": round(predicted["peak_memory_bytes"] / 1e9, 3),
                           "measured": round(measured_rss / 1e9, 3),
                           "error": round(predicted["peak_memory_bytes"] / measured_rss - 1, 3)},
        "within_25_percent": abs(predicted["total_seconds"] / measured_s - 1) <= 0.25
        and abs(predicted["peak_memory_bytes"] / measured_rss - 1) <= 0.25,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
