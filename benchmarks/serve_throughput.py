"""tunesmith serve against its peers on one machine, in one run: generated tokens/s, time to first token.

Run as: nice -n 10 .venv/bin/python benchmarks/serve_throughput.py --threads 2 [--concurrency 16,32,64]
        [--max-tokens 64]
        [--sides serve,serve_schema,batch_api,mixed_lora,static_bf16,static_fp32,sequential_bf16,sequential_fp32,llama_cpp]
        [--out FILE]

Every side runs in a process of its own (started one after another) with the same torch thread count on SmolLM2-135M-Instruct (embedded), the same
prompts (examples/general/prompts.jsonl, cycled past its 24 rows, rendered with the model's chat template),
greedy decoding, at most --max-tokens new tokens, stopping at EOS and <|im_end|>. Tokens: generated ids up to and
including the stop token (the server's usage.completion_tokens).

  serve_N          the real server app (uvicorn in a thread on 127.0.0.1, a temporary home and API key, served
                   with its defaults: bf16 weights where the CPU has bf16 matmuls); N streaming requests POSTed to
                   /v1/chat/completions at once, each from its own thread, after one warm-up request. Time: first
                   request sent → last answer received. TTFT: request sent → first content chunk.
  serve_schema_N   serve_N with every request's answer held to a JSON schema (response_format json_schema
                   {"answer": string}, models/decoding/constraints.py), after a warm-up request with the schema
                   (the first one builds llguidance's view of the tokenizer, 0.5 s once per model): `schema_cost`
                   is 1 - its tokens/s over serve_N's, `schema_seconds_ratio` its wall time over serve_N's. The
                   answers differ (a JSON answer often ends sooner), so read both beside the decode steps.
  mixed_lora       the engine alone (the batcher, no HTTP) on the served weights: 16 requests on the plain base
                   model vs the same 16 on the base wrapped by peft with two LoRA adapters (r 16, all linear layers,
                   random non-zero B), the requests cycling base / adapter a / adapter b in one batch; the two
                   alternate four times and each side's tokens and seconds are summed. Each run starts after one
                   warm-up request per adapter of its batch, so every adapter's prefix store holds the chat
                   template's system prompt, as on a server that has answered with that adapter before (until
                   2026-12-06 one warm-up request on the first row's adapter: the mixed side's a and b rows then
                   prefilled the system prompt cold while every base row reused it). Measured twice: as answered
                   (rows end at their stop tokens: the adapters' answers differ in length from the base's, so the
                   two sides do different work) and with equal work (stop tokens ignored: every row generates
                   --max-tokens on both sides, so the cost is the adapters' alone). Both are checked.
  batch_api        the same server, the largest --concurrency level's prompts as one file through OpenAI's Batch API
                   (/v1/batches, the server's batch_concurrency: 64 by default, --batch-concurrency): time from
                   creating the batch to its status `completed` (polled every 0.05 s), tokens from the output file's
                   usage. Against serve_N at the same N: what the offline path costs or gains over as many clients.
  static_bf16      one left-padded batch of the 16 prompts through transformers `generate`, bf16 weights.
  static_fp32      the same in float32 (the faster of the two where the CPU has no bf16 matmuls: AVX512-BF16 or AMX);
                   serve_16 is checked against each static side measured, so against the faster.
  sequential_*     `generate` one prompt after another (fp32: the issue's baseline; bf16 weights cast once).
  llama_cpp        llama-cpp-python on the embedded Q4_1 GGUF, `create_chat_completion` one prompt after another
                   (`extra_buffers` false: rerun without weight repacking after its AMX matmul crashed).

`same_answers_as` counts the serve_16 answers whose text equals each sequential side's (greedy; bf16 rounding can
change a near-tie, so bf16 serving is compared with sequential bf16 too). `targets` (issue 14) says pass/fail.
The machine is shared: compare ratios within one run, and read `load_avg_*`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from json_report import emit

REPO = Path(__file__).resolve().parents[1]
BASE = "smollm2-135m-instruct"
PROMPTS = REPO / "examples" / "general" / "prompts.jsonl"
SIDES = ("serve", "serve_schema", "batch_api", "mixed_lora", "static_bf16", "static_fp32", "sequential_bf16", "sequential_fp32",
         "llama_cpp")
TARGETS = {"serve_16_tokens_per_s": 250, "serve_16_vs_sequential_fp32": 10.0, "ttft_p50_s": 0.5, "ttft_p99_s": 1.5,
           "mixed_lora_cost": 0.20}


def read_prompts(count: int) -> list[str]:
    rows = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines() if line.strip()]
    return [rows[i % len(rows)] for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, concurrency: int, **settings):
    """The real app in a uvicorn thread; (base url, API key, the app, the uvicorn server to stop)."""
    import httpx
    import uvicorn

    from tunesmith.registry.keys import create_key
    from tunesmith.serve.app import create_app
    from tunesmith.serve.settings import ServeSettings

    app = create_app(ServeSettings(home=home, bases=[BASE], run_jobs=False, max_concurrent_requests=concurrency,
                                   **settings))
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


SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
    "additionalProperties": False}}}


def stream_chat(client, url: str, secret: str, prompt: str, max_tokens: int, response_format: dict | None = None) -> dict:
    """One streamed chat completion: its text, completion tokens and seconds to the first content chunk.

    `client` (an httpx.Client) is made before the clock starts, as an application keeps its client: making one
    builds an SSL context, tens of milliseconds of CPU that 16 client threads would add to the server's TTFT."""
    body = {"model": BASE, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True},
            **({"response_format": response_format} if response_format is not None else {})}
    started, first, text, tokens = time.perf_counter(), None, "", 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"},
                       timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    first = first if first is not None else time.perf_counter() - started
                    text += choice["delta"]["content"]
    return {"text": text, "tokens": tokens, "ttft": first if first is not None else time.perf_counter() - started}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def concurrent_chats(url: str, secret: str, prompts: list[str], max_tokens: int,
                     response_format: dict | None = None) -> tuple[float, list[dict]]:
    """All prompts streamed at once, one client thread each: (seconds from the first request sent to the last
    answer received, the answers). Runs in a client process of its own, as the server's users are elsewhere."""
    import httpx

    answers: list[dict | None] = [None] * len(prompts)
    clients = [httpx.Client() for _ in prompts]
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(
        i, stream_chat(clients[i], url, secret, prompts[i], max_tokens, response_format))) for i in range(len(prompts))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    return seconds, answers


def run_serve(prompts: list[str], levels: list[int], max_tokens: int, response_format: dict | None = None,
              name: str = "serve") -> dict:
    """{name}_N for each concurrency level N, the clients in another process. Each level has a server of its own,
    started the same way (the model loaded, one short request answered), so no level finds the prompts of the
    levels before it in the server's prefix store (models/decoding/prefix_store.py): in one server, serve_32 found
    serve_16's 16 prompts stored whole and prefilled only the rest (its TTFT p50 0.19-0.30 s against 0.74 s from a
    fresh server, benchmarks/README.md). Within a level the prompts are the file's 24, cycled."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    results = {}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client_process:
        client_process.submit(time.sleep, 0).result()  # the client process is up before the clock starts
        for level in levels:
            with tempfile.TemporaryDirectory(prefix="tunesmith-serve-bench-") as home:
                url, secret, app, server = start_server(Path(home), max(levels))
                try:
                    results[f"{name}_{level}"] = serve_level(client_process, url, secret, app, prompts[:level],
                                                             max_tokens, response_format)
                    results["serving_dtype"] = str(app.state.pool.dtype).removeprefix("torch.")
                finally:
                    server.should_exit = True
    return results


def serve_level(client_process, url: str, secret: str, app, prompts: list[str], max_tokens: int,
                response_format: dict | None) -> dict:
    """The prompts streamed at once against a started server: figures, TTFT, how the batcher admitted them, texts."""
    import httpx

    with httpx.Client() as client:
        # loads the model into the pool (and, with a schema, builds llguidance's view of the tokenizer: 0.5 s
        # once per model, which the first schema request pays; not timed, as for the model's load)
        stream_chat(client, url, secret, "Hello!", 4)
    batcher = app.state.pool.loaded[BASE].batcher
    steps_before, admitted_before = batcher.stats.steps, len(batcher.stats.admitted)
    seconds, answers = client_process.submit(concurrent_chats, url, secret, prompts, max_tokens, response_format).result()
    ttfts = [a["ttft"] for a in answers]
    return {**figures(seconds, sum(a["tokens"] for a in answers), len(prompts)),
            "ttft_p50_s": round(percentile(ttfts, 0.5), 3), "ttft_p99_s": round(percentile(ttfts, 0.99), 3),
            "ttft_max_s": round(max(ttfts), 3), "decode_steps": batcher.stats.steps - steps_before,
            "largest_batch": batcher.stats.largest_batch, "admissions": list(batcher.stats.admitted)[admitted_before:],
            "texts": [a["text"] for a in answers]}


def engine_tokens_per_s(model, tokenizer, prompt_ids: list[list[int]], adapters: list[str | None], max_tokens: int,
                        to_the_end: bool = False) -> dict:
    """The requests through one batcher, submitted together (no HTTP): generated tokens/s. `to_the_end`: stop
    tokens do not end a row, so every request generates max_tokens (the same work whatever the answers)."""
    from tunesmith.serve.model_pool import ServedModel
    from tunesmith.models.decoding.requests import SamplingParams, Usage

    served = ServedModel(model, tokenizer)
    if to_the_end:
        served.batcher.end_ids = set()
    served.batcher.idle_exit_s = 0.5  # the thread exits soon after the run (below)
    submit = lambda ids, adapter, n: served.batcher.submit(ids, SamplingParams(max_new_tokens=n, temperature=0), adapter, Usage())
    for adapter in dict.fromkeys(adapters):  # every adapter's prefix store holds the shared system prompt, as in steady serving
        warm = submit(prompt_ids[0], adapter, 4)
        while warm.out.get() is not None:
            pass
    started = time.perf_counter()
    with served.lock:  # all admitted together
        requests = [submit(ids, adapter, max_tokens) for ids, adapter in zip(prompt_ids, adapters)]
    for request in requests:
        while (item := request.out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
    seconds = time.perf_counter() - started
    if (thread := served.batcher.thread) is not None:
        thread.join()  # its OpenMP pool goes before the next run's batcher starts
    answers = [r.usage.completion_tokens for r in requests]
    return {**figures(seconds, sum(answers), len(requests)), "longest_answer": max(answers)}


def run_mixed_lora(prompts: list[str], max_tokens: int, dtype, rounds: int = 4) -> dict:
    """Base alone vs mixed adapters, alternating `rounds` times (the machine's load drifts); summed per side."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models.chat import render_prompts
    from tunesmith.models.load import load_tokenizer
    from tunesmith.serve.model_pool import ModelPool
    from tunesmith.serve.passing_thread import in_passing_thread

    tokenizer = load_tokenizer(BASE)
    ids = render_prompts(tokenizer, [[{"role": "user", "content": p}] for p in prompts])

    def build():  # as the server loads: packed linears, in a thread that exits (serve/passing_thread.py)
        pool = ModelPool(1, dtype)
        base = pool.load(BASE)
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
        torch.manual_seed(0)  # the same adapters in every run (A is drawn here, B below): the same answers to time
        model = get_peft_model(pool.load(BASE), config, adapter_name="a")
        model.add_adapter("b", config)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.01)
        return base, model

    base, model = in_passing_thread(build)
    adapters = [(None, "a", "b")[i % 3] for i in range(len(ids))]
    report = {"rounds": rounds, "dtype": str(dtype).removeprefix("torch.")}
    for work, to_the_end in (("as_answered", False), ("equal_work", True)):
        runs = {"base_only": [], "mixed_adapters": []}
        for _ in range(rounds):
            runs["base_only"].append(engine_tokens_per_s(base, tokenizer, ids, [None] * len(ids), max_tokens, to_the_end))
            runs["mixed_adapters"].append(engine_tokens_per_s(model.eval(), tokenizer, ids, adapters, max_tokens, to_the_end))
        # a batch runs until its longest answer ends: as answered, tokens/s moves with the answers' lengths
        # (mean = generated_tokens / requests) against the longest, whatever the adapters cost
        sides = {side: {**figures(sum(r["seconds"] for r in rs), sum(r["generated_tokens"] for r in rs), len(ids) * rounds),
                        "longest_answer": max(r["longest_answer"] for r in rs)}
                 for side, rs in runs.items()}
        cost = round(1 - sides["mixed_adapters"]["generated_tokens_per_s"] / sides["base_only"]["generated_tokens_per_s"], 3)
        report[work] = {**sides, "cost": cost}
    return {**report, "cost": report["as_answered"]["cost"], "cost_equal_work": report["equal_work"]["cost"]}


def load_hf(dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.resolve import resolve_model_dir

    model_dir = resolve_model_dir(BASE)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval(), AutoTokenizer.from_pretrained(model_dir)


def generate_config(tokenizer, max_tokens: int) -> dict:
    from tunesmith.models.chat import stop_token_ids

    return dict(max_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)


def until_stop(row: list[int], stops: list[int]) -> list[int]:
    """Generated ids through the first stop token (padding after it dropped)."""
    for position, token in enumerate(row):
        if token in stops:
            return row[: position + 1]
    return row


def run_sequential(prompts: list[str], max_tokens: int, dtype) -> dict:
    import torch

    from tunesmith.models.chat import stop_token_ids

    model, tokenizer = load_hf(dtype)
    stops = stop_token_ids(tokenizer)

    def answer(prompt: str) -> list[int]:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            output = model.generate(**inputs, **generate_config(tokenizer, max_tokens))
        return until_stop(output[0, inputs["input_ids"].shape[1]:].tolist(), stops)

    answer("Hello!")  # warm-up
    started = time.perf_counter()
    generated = [answer(prompt) for prompt in prompts]
    seconds = time.perf_counter() - started
    return {**figures(seconds, sum(len(ids) for ids in generated), len(prompts)),
            "texts": [tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]}


def run_static_batch(prompts: list[str], max_tokens: int, dtype) -> dict:
    """One left-padded batch through `generate`: every row runs until the last one stops."""
    import torch

    from tunesmith.models.chat import left_pad, render_prompts, stop_token_ids

    model, tokenizer = load_hf(dtype)
    ids = render_prompts(tokenizer, [[{"role": "user", "content": p}] for p in prompts])
    input_ids, mask = left_pad(ids, tokenizer.pad_token_id)
    with torch.inference_mode():
        model.generate(input_ids=input_ids[:2], attention_mask=mask[:2], **generate_config(tokenizer, 4))  # warm-up
        started = time.perf_counter()
        output = model.generate(input_ids=input_ids, attention_mask=mask, **generate_config(tokenizer, max_tokens))
        seconds = time.perf_counter() - started
    rows = [until_stop(row, stop_token_ids(tokenizer)) for row in output[:, input_ids.shape[1]:].tolist()]
    return figures(seconds, sum(len(row) for row in rows), len(prompts))


def run_llama_cpp(prompts: list[str], max_tokens: int, threads: int, extra_buffers: bool = True) -> dict:
    """`extra_buffers`: llama.cpp's weight repacking (AMX, CPU_REPACK), on by default. Its AMX matmul crashes on
    some Xeons (ggml-org/llama.cpp#20824; here on the embedded Q4_1 file's first decode), so the side reruns
    without it when its process dies of a segmentation fault (side_in_own_process)."""
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    from tunesmith.models.resolve import EMBEDDED_MODELS, embedded_gguf_path

    gguf = embedded_gguf_path(EMBEDDED_MODELS[BASE])
    defaults = bindings.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    if not extra_buffers:  # llama-cpp-python's Llama has no argument for it: its model parameters start from these
        bindings.llama_model_default_params = without_extra_buffers
    try:
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                              verbose=False)  # n_threads_batch defaults to every core: it thrashed (6.3 s vs 0.7 s)
    finally:
        bindings.llama_model_default_params = defaults
    ask = lambda prompt, n: llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=n, temperature=0)
    ask("Hello!", 4)  # warm-up
    started = time.perf_counter()
    answers = [ask(prompt, max_tokens) for prompt in prompts]
    seconds = time.perf_counter() - started
    # llama.cpp's usage does not count the stop token it ended on; count it, as the other sides do
    tokens = sum(a["usage"]["completion_tokens"] + (a["choices"][0]["finish_reason"] == "stop") for a in answers)
    return {**figures(seconds, tokens, len(prompts)), "gguf": gguf.name, "extra_buffers": extra_buffers}


def figures(seconds: float, tokens: int, requests: int) -> dict:
    return {"seconds": round(seconds, 2), "requests": requests, "generated_tokens": tokens,
            "generated_tokens_per_s": round(tokens / seconds, 1)}


def idle_cores() -> int:
    """Cores not already busy (1-minute load): more torch threads than free cores make OpenMP threads spin
    against each other, and a forward pass gets tens of times slower."""
    return max(1, (os.cpu_count() or 1) - round(os.getloadavg()[0]))


def machine_state() -> dict:
    import torch
    import transformers

    from tunesmith.train.provenance import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()]}


def target_checks(report: dict) -> dict:
    """Each of issue 14's serving targets that this run measured: the figure, the target, pass or fail."""
    checks, serve16 = {}, report.get("serve_16")
    if serve16:
        checks["serve_16_tokens_per_s"] = (serve16["generated_tokens_per_s"], ">=", TARGETS["serve_16_tokens_per_s"])
        checks["ttft_p50_s"] = (serve16["ttft_p50_s"], "<", TARGETS["ttft_p50_s"])
        checks["ttft_p99_s"] = (serve16["ttft_p99_s"], "<", TARGETS["ttft_p99_s"])
        if "sequential_fp32" in report:
            ratio = serve16["generated_tokens_per_s"] / report["sequential_fp32"]["generated_tokens_per_s"]
            checks["serve_16_vs_sequential_fp32"] = (round(ratio, 2), ">=", TARGETS["serve_16_vs_sequential_fp32"])
        for static in ("static_bf16", "static_fp32"):
            if static in report:
                checks[f"serve_16_vs_{static}"] = (round(serve16["generated_tokens_per_s"]
                                                         / report[static]["generated_tokens_per_s"], 2), ">=", 1.0)
    levels = sorted(int(key.split("_")[1]) for key in report if key.startswith("serve_") and key[6:].isdigit())
    if len(levels) > 1:
        rates = [report[f"serve_{n}"]["generated_tokens_per_s"] for n in levels]
        checks["throughput_grows_to_" + str(levels[-1])] = (rates, "increasing", True)
    if "mixed_lora" in report:
        checks["mixed_lora_cost"] = (report["mixed_lora"]["cost"], "<=", TARGETS["mixed_lora_cost"])
        checks["mixed_lora_cost_equal_work"] = (report["mixed_lora"]["cost_equal_work"], "<=", TARGETS["mixed_lora_cost"])
    passed = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              "increasing": lambda a, _: all(x < y for x, y in zip(a, a[1:]))}
    return {name: {"measured": value, "target": f"{op} {target}" if op != "increasing" else op,
                   "pass": passed[op](value, target)} for name, (value, op, target) in checks.items()}


def run_batch_api(prompts: list[str], max_tokens: int, batch_concurrency: int | None) -> dict:
    """The prompts as one batch file: seconds from creating the batch to its completion, tokens from its output."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="tunesmith-serve-bench-") as home:
        chosen = {} if batch_concurrency is None else {"batch_concurrency": batch_concurrency}
        url, secret, app, server = start_server(Path(home), len(prompts), **chosen)
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
                stream_chat(client, url, secret, "Hello!", 4)  # loads the model into the pool: not timed
                rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": BASE, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                                  "max_tokens": max_tokens}} for i, prompt in enumerate(prompts)]
                content = "".join(json.dumps(row) + "\n" for row in rows).encode()
                file_id = client.post("/v1/files", data={"purpose": "batch"},
                                      files={"file": ("batch.jsonl", content)}).raise_for_status().json()["id"]
                started = time.perf_counter()
                batch = client.post("/v1/batches", json={"input_file_id": file_id, "completion_window": "24h",
                                                         "endpoint": "/v1/chat/completions"}).raise_for_status().json()
                while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
                    time.sleep(0.05)
                    batch = client.get(f"/v1/batches/{batch['id']}").raise_for_status().json()
                seconds = time.perf_counter() - started
                assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 0, batch
                output = client.get(f"/v1/files/{batch['output_file_id']}/content").raise_for_status().text
        finally:
            server.should_exit = True
    answers = {row["custom_id"]: row["response"]["body"] for row in map(json.loads, output.splitlines())}
    tokens = sum(answer["usage"]["completion_tokens"] for answer in answers.values())
    texts = [answers[f"r{i}"]["choices"][0]["message"]["content"] for i in range(len(prompts))]
    return {**figures(seconds, tokens, len(prompts)), "batch_concurrency": app.state.settings.batch_concurrency,
            "texts": texts}


def run_side(side: str, args) -> dict:
    """One side, in this process: {report key: figures}, texts under "texts"."""
    import torch

    from tunesmith.models.load import inference_dtype

    torch.set_num_threads(args.threads)
    levels = [int(n) for n in args.concurrency.split(",")]
    prompts = read_prompts(max(levels + [args.requests]))
    if side in ("serve", "serve_schema"):
        served = run_serve(prompts, levels, args.max_tokens, SCHEMA_FORMAT if side == "serve_schema" else None, side)
        served["texts"] = {f"{side}_{level}": served[f"{side}_{level}"].pop("texts") for level in levels}
        return served
    if side == "batch_api":
        result = run_batch_api(prompts[: max(levels)], args.max_tokens, args.batch_concurrency)
        return {"batch_api": result, "texts": {"batch_api": result.pop("texts")}}
    if side == "mixed_lora":
        return {"mixed_lora": run_mixed_lora(prompts[: args.requests], args.max_tokens, inference_dtype(None))}
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(side.rsplit("_", 1)[-1])  # static_* and sequential_*
    if side.startswith("static_"):
        return {side: run_static_batch(prompts[: args.requests], args.max_tokens, dtype)}
    if side.startswith("sequential_"):
        result = run_sequential(prompts[: args.requests], args.max_tokens, dtype)
        return {side: result, "texts": {side: result.pop("texts")}}
    return {"llama_cpp": run_llama_cpp(prompts[: args.requests], args.max_tokens, args.threads,
                                       extra_buffers=not args.llama_without_extra_buffers)}


def side_in_own_process(side: str, args) -> dict:
    """Each side starts in a fresh process: nothing one side left behind (OpenMP thread pools, a server's
    batcher thread, the allocator's freed blocks) slows the next one (serve/passing_thread.py)."""
    command = [sys.executable, __file__, "--only", side, "--threads", str(args.threads), "--requests", str(args.requests),
               "--concurrency", args.concurrency, "--max-tokens", str(args.max_tokens)]
    if args.batch_concurrency is not None:
        command += ["--batch-concurrency", str(args.batch_concurrency)]
    done = subprocess.run(command, capture_output=True, text=True)
    if side == "llama_cpp" and done.returncode == -signal.SIGSEGV:  # llama.cpp's AMX matmul (run_llama_cpp)
        done = subprocess.run([*command, "--llama-without-extra-buffers"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"side {side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests of the sequential, static and mixed-LoRA sides")
    parser.add_argument("--concurrency", default="16,32,64", help="concurrent requests of the serve sides")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=idle_cores(), help="torch threads, every side (default: idle cores)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {','.join(SIDES)}")
    parser.add_argument("--batch-concurrency", type=int, help="the batch_api side's server setting (default: its default)")
    parser.add_argument("--only", choices=SIDES, help=argparse.SUPPRESS)  # internal: run one side, print its JSON
    parser.add_argument("--llama-without-extra-buffers", action="store_true", help=argparse.SUPPRESS)  # internal
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_side(args.only, args)))
        return
    sides = args.sides.split(",")
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        parser.error(f"--sides: unknown {unknown}; choose from {', '.join(SIDES)}")

    report = {"machine": {**machine_state(), "torch_threads": args.threads},
              "settings": {"model": BASE, "requests": args.requests, "concurrency": [int(n) for n in args.concurrency.split(",")],
                           "max_tokens": args.max_tokens, "temperature": 0, "each_side": "its own process"}}
    texts = {}
    for side in (side for side in SIDES if side in sides):
        result = side_in_own_process(side, args)
        texts.update(result.pop("texts", {}))
        report.update(result)
    if "batch_api" in texts and f"serve_{max(report['settings']['concurrency'])}" in texts:
        level = max(report["settings"]["concurrency"])
        served = texts[f"serve_{level}"]
        report["batch_api"]["same_answers_as_serve"] = f"{sum(a == b for a, b in zip(texts['batch_api'], served))}/{level}"
        report["batch_api"][f"vs_serve_{level}"] = round(report["batch_api"]["generated_tokens_per_s"]
                                                         / report[f"serve_{level}"]["generated_tokens_per_s"], 3)
    levels = report["settings"]["concurrency"]
    if all(f"{side}_{level}" in report for side in ("serve", "serve_schema") for level in levels):
        report["schema_cost"] = {level: round(1 - report[f"serve_schema_{level}"]["generated_tokens_per_s"]
                                              / report[f"serve_{level}"]["generated_tokens_per_s"], 3) for level in levels}
        report["schema_seconds_ratio"] = {level: round(report[f"serve_schema_{level}"]["seconds"]
                                                       / report[f"serve_{level}"]["seconds"], 3) for level in levels}
    if "serve_16" in texts:
        report["same_answers_as"] = {name: f"{sum(a == b for a, b in zip(texts['serve_16'], other))}/{len(other)}"
                                     for name, other in texts.items() if name.startswith("sequential")}
    report["targets"] = target_checks(report)
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(report, args.out)


if __name__ == "__main__":
    main()
