"""16 concurrent chat requests to `tunesmith serve` vs the same requests one at a time with transformers `generate`.

Run as: .venv/bin/python benchmarks/serve_throughput.py [--requests 16] [--max-tokens 64] [--out result.json]

Both sides run in this process on the same model (SmolLM2-135M-Instruct, embedded, fp32) with the same torch
thread count, the same prompts (examples/general/prompts.jsonl, rendered with the model's chat template),
greedy decoding and the same stop tokens (EOS and <|im_end|>).

  tunesmith  the real server app (uvicorn in a thread on 127.0.0.1, a temporary home and API key); every request
             is POSTed to /v1/chat/completions at once from its own thread. One warm-up request loads the model
             first. Time: first request sent → last answer received. Tokens: the responses' usage.completion_tokens.
  sequential `model.generate(max_new_tokens=N, do_sample=False)` per prompt, one after another, after one warm-up
             call. Tokens: generated ids up to and including the stop token.

`same_answers` counts the requests whose text is identical on both sides (greedy: they should all be).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = "smollm2-135m-instruct"
PROMPTS = REPO / "examples" / "general" / "prompts.jsonl"


def read_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    if len(rows) < count:
        raise SystemExit(f"{PROMPTS} has {len(rows)} prompts; --requests {count} needs as many")
    return [row["prompt"] for row in rows[:count]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path):
    """The real app in a uvicorn thread; (base url, API key, the app, the uvicorn server to stop)."""
    import httpx
    import uvicorn

    from tunesmith.registry.keys import create_key
    from tunesmith.serve.app import create_app
    from tunesmith.serve.settings import ServeSettings

    app = create_app(ServeSettings(home=home, bases=[BASE], run_jobs=False))
    _, secret = create_key(app.state.db, "benchmark")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return f"http://127.0.0.1:{port}", secret, app, server
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError("server did not start")


def chat(url: str, secret: str, prompt: str, max_tokens: int) -> dict:
    import httpx

    body = {"model": BASE, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"},
                          timeout=600)
    response.raise_for_status()
    return response.json()


def run_tunesmith(prompts: list[str], max_tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tunesmith-serve-bench-") as home:
        url, secret, app, server = start_server(Path(home))
        try:
            chat(url, secret, "Hello!", 4)  # loads the model into the pool
            answers: list[dict | None] = [None] * len(prompts)

            def send(i: int) -> None:
                answers[i] = chat(url, secret, prompts[i], max_tokens)

            threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prompts))]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            batcher = app.state.pool.loaded[BASE].batcher
            stats = {"admissions": list(batcher.stats.admitted)[1:], "largest_batch": batcher.stats.largest_batch}
        finally:
            server.should_exit = True
    tokens = sum(answer["usage"]["completion_tokens"] for answer in answers)
    return {"seconds": seconds, "generated_tokens": tokens, "texts": [a["choices"][0]["message"]["content"] for a in answers],
            "batcher": stats}


def run_sequential(prompts: list[str], max_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.chat import stop_token_ids
    from tunesmith.models.resolve import resolve_model_dir

    model_dir = resolve_model_dir(BASE)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stops = stop_token_ids(tokenizer)

    def answer(prompt: str) -> list[int]:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None,
                                    top_k=None, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        return output[0, inputs["input_ids"].shape[1]:].tolist()

    answer("Hello!")  # warm-up
    started = time.perf_counter()
    generated = [answer(prompt) for prompt in prompts]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "generated_tokens": sum(len(ids) for ids in generated),
            "texts": [tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]}


def figures(side: dict, requests: int) -> dict:
    return {"seconds": round(side["seconds"], 2), "requests_per_s": round(requests / side["seconds"], 3),
            "generated_tokens": side["generated_tokens"],
            "generated_tokens_per_s": round(side["generated_tokens"] / side["seconds"], 1)}


def idle_cores() -> int:
    """Cores not already busy (1-minute load): more torch threads than free cores make OpenMP threads spin
    against each other, and a forward pass gets tens of times slower."""
    return max(1, (os.cpu_count() or 1) - round(os.getloadavg()[0]))


def machine_state() -> dict:
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=idle_cores(), help="torch threads, both sides (default: idle cores)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    machine = machine_state()
    prompts = read_prompts(args.requests)
    served = run_tunesmith(prompts, args.max_tokens)
    sequential = run_sequential(prompts, args.max_tokens)
    report = {
        "machine": machine,
        "settings": {"model": BASE, "requests": args.requests, "max_tokens": args.max_tokens, "temperature": 0},
        "tunesmith_serve_concurrent": {**figures(served, args.requests), "batcher": served["batcher"]},
        "transformers_generate_sequential": figures(sequential, args.requests),
        "ratios": {
            "requests_per_s": round(sequential["seconds"] / served["seconds"], 2),
            "generated_tokens_per_s": round((served["generated_tokens"] / served["seconds"])
                                            / (sequential["generated_tokens"] / sequential["seconds"]), 2),
        },
        "same_answers": sum(a == b for a, b in zip(served["texts"], sequential["texts"])),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
