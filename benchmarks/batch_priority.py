"""Chats while a batch job (/v1/batches) fills the engine: their first-token time and decoding speed, and the batch's
throughput, with the batch's requests as interactive rows (before 2026-12-07) and as background rows (now).

Run as: .venv/bin/python benchmarks/batch_priority.py [--rounds 2] [--same-length] [--out FILE]

The engine alone (the batcher, no HTTP) on the embedded model with the server's weights: 64 threads keep 64 batch
requests in flight (as serve/batches.py with batch_concurrency 64), answers of 32-95 tokens (`--same-length`: all 64
tokens, so they start and finish together: the worst case for a chat waiting for a free row); stop tokens ignored, so
both sides do the same work. After 10 s, 10 chats of 32 tokens one after another (0.5 s apart): time to first token
and decoding tokens/s. Then 15 s of the batch alone. Each side runs in its own process, alternating `--rounds` times.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from json_report import emit

BASE = "smollm2-135m-instruct"


def side(background: bool, same_length: bool) -> dict:
    import torch

    torch.set_num_threads(2)
    from tunesmith.models.chat import render_prompts
    from tunesmith.models.decoding.requests import SamplingParams, Usage
    from tunesmith.models.load import inference_dtype
    from tunesmith.serve.model_pool import ModelPool

    served = ModelPool(1, inference_dtype(None)).served(BASE, BASE)
    served.batcher.end_ids = set()  # every request generates its max_tokens: the same work on both sides
    prompts = render_prompts(served.tokenizer, [[{"role": "user", "content": f"Write a short paragraph about the "
                                                  f"number {i}."}] for i in range(200)])
    generated = [0]

    def run(prompt, tokens, as_background=False, count=False):
        request = served.batcher.submit(prompt, SamplingParams(max_new_tokens=tokens, temperature=0), None, Usage(),
                                        background=as_background)
        first = None
        while (item := request.out.get()) is not None:
            first = first or time.perf_counter()
            generated[0] += count
        return first

    def chats(count: int) -> dict:
        ttft, speed = [], []
        for k in range(count):
            started = time.perf_counter()
            first = run(prompts[100 + k], 32)
            ttft.append(first - started)
            speed.append(31 / (time.perf_counter() - first))
            time.sleep(0.5)
        return {"ttft_p50_s": round(statistics.median(ttft), 3), "ttft_max_s": round(max(ttft), 3),
                "chat_tokens_per_s_p50": round(statistics.median(speed), 1)}

    run(prompts[0], 8)  # warm
    result = {"idle": chats(5)}
    stop = threading.Event()

    def batch_worker(j: int) -> None:
        i = j
        while not stop.is_set():
            run(prompts[i % 100], 64 if same_length else 32 + (i * 7) % 64, background, count=True)
            i += 64

    for j in range(64):
        threading.Thread(target=batch_worker, args=(j,), daemon=True).start()
    time.sleep(10)
    started, before = time.perf_counter(), generated[0]
    result["under_batch"] = chats(10)
    result["batch_tokens_per_s_during_chats"] = round((generated[0] - before) / (time.perf_counter() - started), 1)
    time.sleep(2)
    started, before = time.perf_counter(), generated[0]
    time.sleep(15)
    result["batch_tokens_per_s_alone"] = round((generated[0] - before) / (time.perf_counter() - started), 1)
    stop.set()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--same-length", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--side", choices=["interactive", "background"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side == "background", args.same_length)), flush=True)
        import os

        os._exit(0)  # the batch's threads are still decoding
    import os

    runs = {"interactive": [], "background": []}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name in runs:
            command = [sys.executable, __file__, "--side", name] + (["--same-length"] if args.same_length else [])
            printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(printed.strip().splitlines()[-1]))
    emit({"benchmark": "batch_priority", "same_length": args.same_length, "rounds": args.rounds,
          "load_avg_before": [round(x, 2) for x in load_before], "batch_rows_as": runs}, args.out)


if __name__ == "__main__":
    main()
