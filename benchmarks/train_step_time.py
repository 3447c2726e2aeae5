"""Seconds a training step of the demo's recipe takes, eager against compiled (train.compile) and grouped attention
against sdpa's kernels (train.grouped_attention), side by side.

Run as (repo root, quiet machine):
    .venv/bin/python benchmarks/train_step_time.py [--steps 60] [--batch-sizes 4,16] [--compile off,on]
        [--attention grouped] [--rounds 1] [--out FILE]

Each side is `tunesmith.train.sft.train` of examples/elements/demo.yaml in its own process, with
train.max_steps STEPS, no evaluation or checkpoint before the end, train.batch_size, train.compile and
train.grouped_attention as named, and `loop.train_step` timed. Sides alternate (eager, compiled, eager, ...;
grouped, sdpa, grouped, ...) so drift on a noisy machine hits both.
Printed per side: the first step's seconds (the compiled side compiles there; torch's inductor cache in its
temporary directory makes a later process's compile faster, so the first compiled side of a machine is the cold
figure), the mean and median of steps 11..STEPS, real tokens a step, and the whole process's wall seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from json_report import emit

REPO = Path(__file__).resolve().parents[1]


def child(steps: int, batch_size: int, compile_layers: bool, grouped: bool, out: Path) -> dict:
    """In this process: one timed run (called through --child)."""
    from tunesmith.config import load_config
    from tunesmith.train import loop, sft

    overrides = {"out": out, "train.max_steps": steps, "train.eval_every": 10**6, "train.save_every": 10**6,
                 "train.batch_size": batch_size, "train.compile": compile_layers, "train.grouped_attention": grouped}
    config = load_config(REPO / "examples" / "elements" / "demo.yaml", overrides)
    original, seconds, tokens, losses = loop.train_step, [], [], []

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        seconds.append(time.perf_counter() - started)
        tokens.append(result.real_tokens)
        losses.append(result.loss)
        return result

    loop.train_step = timed
    sft.train(config)
    tail, tail_tokens = seconds[10:], tokens[10:]
    return {"first_step_s": round(seconds[0], 2), "mean_step_s": round(statistics.mean(tail), 4),
            "median_step_s": round(statistics.median(tail), 4), "real_tokens_per_step": round(statistics.mean(tail_tokens), 1),
            "tokens_per_s": round(sum(tail_tokens) / sum(tail), 1), "measured_steps": len(tail),
            "last_loss": round(float(losses[-1]), 4)}


def run_side(steps: int, batch_size: int, compile_layers: bool, grouped: bool, work: Path) -> dict:
    out = work / f"b{batch_size}-{'compiled' if compile_layers else 'eager'}-{'grouped' if grouped else 'sdpa'}-{time.monotonic_ns()}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps([steps, batch_size, compile_layers, grouped, str(out)])],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"side failed (batch {batch_size}, compile {compile_layers}, grouped attention {grouped}):\n"
                         f"{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-sizes", default="4,16")
    parser.add_argument("--compile", default="off,on", help="train.compile sides: off, on or both")
    parser.add_argument("--attention", default="grouped", help="train.grouped_attention sides: grouped (the default), sdpa or both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        steps, batch_size, compile_layers, grouped, out = json.loads(args.child)
        print(json.dumps(child(steps, batch_size, compile_layers, grouped, Path(out))))
        return
    compiles = [{"off": False, "on": True}[c] for c in args.compile.split(",")]
    attentions = [{"grouped": True, "sdpa": False}[a] for a in args.attention.split(",")]
    report = {"steps": args.steps, "load_avg_before": [round(x, 2) for x in os.getloadavg()], "sides": []}
    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as work:
        for _ in range(args.rounds):
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                for compile_layers in compiles:
                    for grouped in attentions:
                        side = run_side(args.steps, batch_size, compile_layers, grouped, Path(work))
                        report["sides"].append({"batch_size": batch_size, "compile": compile_layers,
                                                "grouped_attention": grouped, **side})
    report["compiled_over_eager_step"] = ratios(report["sides"], "compile", "batch_size", "grouped_attention")
    report["grouped_over_sdpa_step"] = ratios(report["sides"], "grouped_attention", "batch_size", "compile")
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(report, args.out)


def ratios(sides: list[dict], switch: str, *keys: str) -> dict:
    """Mean step seconds with `switch` on over off, per combination of `keys` where both ran (means over rounds)."""
    means: dict[tuple, dict[bool, list[float]]] = {}
    for side in sides:
        means.setdefault(tuple(side[k] for k in keys), {}).setdefault(side[switch], []).append(side["mean_step_s"])
    return {"/".join(f"{k}={v}" for k, v in zip(keys, combo)): round(statistics.mean(by[True]) / statistics.mean(by[False]), 3)
            for combo, by in means.items() if True in by and False in by}


if __name__ == "__main__":
    main()
