"""`tunesmith serve` under a mixed, partly abusive load: per-route latency percentiles and status counts.

Run as: .venv/bin/python benchmarks/serve_load.py [--keys 4] [--seconds 120] [--base smollm2-135m-instruct]
        [--tiny] [--out result.json]

The server runs as its own process (`tunesmith serve`, a temporary home, --max-upload-mb 1); this process is
the clients, one asyncio loop. Each of --keys keys runs, concurrently and in a loop until --seconds pass:
  chat        non-streaming chat completions (max_tokens 48, n 1 or 2)
  stream      streaming chat completions, read to the end
  files       upload a small training file, list, retrieve, read its content, delete
  jobs        create a fine-tuning job on that file and cancel it at once
and, alongside, the abusive clients:
  slow_reader a stream (max_tokens 12) read one chunk per second
  disconnect  a non-streaming chat whose client gives up after 0.3 s
  oversized   a 6 MB JSON body (413), a 2 MB chunked upload over the 1 MB cap (413), a 6 MB body without a key (401)
  long_stop   a 300-character stop string (400) and four of 256 characters (200)
plus `health`, polled every 100 ms. Latency is request sent → response read (for streams: the whole stream).
Prints one JSON object: per route {count, p50_ms, p95_ms, p99_ms, max_ms, statuses}, `server_errors` (every
5xx, any route) and `health_and_files_p99_under_200ms`. 429s (per-key limits) are expected, not errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TRAINING_ROWS = "".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                                 {"role": "assistant", "content": f"{2 * i}."}]}) + "\n"
                        for i in range(12)).encode()
QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "Why is the sky blue?",
             "Write a haiku about rain.", "What does a compiler do?", "How many legs has a spider?"]


class Recorder:
    def __init__(self):
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, route: str, started: float, status: int | str) -> None:
        self.latencies[route].append(time.perf_counter() - started)
        self.statuses[route][str(status)] += 1

    def table(self) -> dict:
        rows = {}
        for route, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)
            rows[route] = {"count": len(ordered), "p50_ms": round(1000 * statistics.median(ordered), 1),
                           "p95_ms": pick(0.95), "p99_ms": pick(0.99), "max_ms": round(1000 * ordered[-1], 1),
                           "statuses": dict(self.statuses[route])}
        return rows


async def timed(recorder: Recorder, route: str, call) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await call()
    except httpx.TimeoutException:
        recorder.add(route, started, "client_timeout")
        return None
    except httpx.TransportError as error:
        recorder.add(route, started, type(error).__name__)
        return None
    recorder.add(route, started, response.status_code)
    return response


def chat_body(model: str, index: int, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
            "max_tokens": 48, "temperature": 0.7, "seed": index, **extra}


async def chat_loop(client, recorder, model, until):
    i = 0
    while time.time() < until:
        await timed(recorder, "chat", lambda: client.post("/v1/chat/completions", json=chat_body(model, i, n=1 + i % 2)))
        i += 1


async def read_stream(client, body, pause: float = 0.0) -> httpx.Response:
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for _ in response.aiter_lines():
            if pause:
                await asyncio.sleep(pause)
    return response


async def stream_loop(client, recorder, model, until):
    i = 0
    while time.time() < until:
        await timed(recorder, "stream", lambda: read_stream(client, chat_body(model, i, stream=True)))
        i += 1


async def files_loop(client, recorder, until):
    while time.time() < until:
        uploaded = await timed(recorder, "files_upload", lambda: client.post(
            "/v1/files", data={"purpose": "fine-tune"}, files={"file": ("load.jsonl", TRAINING_ROWS)}))
        await timed(recorder, "files_list", lambda: client.get("/v1/files"))
        if uploaded is None or uploaded.status_code != 200:
            await asyncio.sleep(0.2)
            continue
        file_id = uploaded.json()["id"]
        await timed(recorder, "files_retrieve", lambda: client.get(f"/v1/files/{file_id}"))
        await timed(recorder, "files_content", lambda: client.get(f"/v1/files/{file_id}/content"))
        await timed(recorder, "files_delete", lambda: client.delete(f"/v1/files/{file_id}"))
        await asyncio.sleep(0.2)


async def jobs_loop(client, recorder, model, until):
    uploaded = await client.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("job.jsonl", TRAINING_ROWS)})
    file_id = uploaded.json()["id"]
    while time.time() < until:
        job = await timed(recorder, "jobs_create", lambda: client.post(
            "/v1/fine_tuning/jobs", json={"model": model, "training_file": file_id}))
        if job is not None and job.status_code == 200:
            job_id = job.json()["id"]
            await timed(recorder, "jobs_cancel", lambda: client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel"))
        await timed(recorder, "jobs_list", lambda: client.get("/v1/fine_tuning/jobs"))
        await asyncio.sleep(2.0)


async def health_loop(client, recorder, until):
    while time.time() < until:
        await timed(recorder, "health", lambda: client.get("/health"))
        await asyncio.sleep(0.1)


async def abusive_loop(client, anonymous, recorder, model, until):
    big = b'{"model": "x", "messages": [{"role": "user", "content": "' + b"a" * (6 << 20) + b'"}]}'

    async def chunks(size: int):
        for _ in range(size // 65536):
            yield b"a" * 65536

    async def chunked_upload():
        boundary = "loadtest"
        async def body():
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
                   f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n').encode()
            async for chunk in chunks(2 << 20):
                yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()
        return await client.post("/v1/files", content=body(),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    i = 0
    while time.time() < until:
        await timed(recorder, "abuse_slow_reader", lambda: read_stream(client, chat_body(model, i, stream=True, max_tokens=12), 1.0))
        try:
            await client.post("/v1/chat/completions", json=chat_body(model, i, max_tokens=200), timeout=0.3)
        except httpx.TimeoutException:
            pass
        recorder.statuses["abuse_disconnect"]["sent"] += 1
        await timed(recorder, "abuse_oversized_json", lambda: client.post(
            "/v1/chat/completions", content=big, headers={"Content-Type": "application/json"}))
        await timed(recorder, "abuse_oversized_upload", chunked_upload)
        await timed(recorder, "abuse_no_key_big_body", lambda: anonymous.post(
            "/v1/chat/completions", content=big, headers={"Content-Type": "application/json"}))
        await timed(recorder, "abuse_long_stop", lambda: client.post(
            "/v1/chat/completions", json=chat_body(model, i, stop=["x" * 300])))
        await timed(recorder, "abuse_max_stops", lambda: client.post(
            "/v1/chat/completions", json=chat_body(model, i, stop=["x" * 256] * 4)))
        i += 1


def start_server(home: Path, base: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(home.parent / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "serve", "--home", str(home), "--base", base,
                                "--port", str(port), "--max-upload-mb", "1"], stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start: {home.parent / 'server.log'}")


def create_key(home: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "keys", "create", "--home", str(home)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    return done.stdout.strip().splitlines()[-1]


async def run_load(url: str, secrets: list[str], model: str, seconds: float) -> Recorder:
    recorder, until = Recorder(), time.time() + seconds
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    clients = [httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {s}"}, timeout=120, limits=limits)
               for s in secrets]
    anonymous = httpx.AsyncClient(base_url=url, timeout=120)
    tasks = [health_loop(anonymous, recorder, until), abusive_loop(clients[0], anonymous, recorder, model, until)]
    for client in clients:
        tasks += [chat_loop(client, recorder, model, until), stream_loop(client, recorder, model, until),
                  files_loop(client, recorder, until), jobs_loop(client, recorder, model, until)]
    await asyncio.gather(*tasks)
    for client in [*clients, anonymous]:
        await client.aclose()
    return recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--tiny", action="store_true", help="serve the tests' tiny random model instead of --base")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        home, base = Path(scratch) / "home", args.base
        if args.tiny:
            sys.path.insert(0, str(REPO))
            from tests.tiny import save_tiny_pair

            base = str(save_tiny_pair(Path(scratch) / "tiny"))
        port = 18000 + os.getpid() % 1000
        server = start_server(home, base, port)
        try:
            secrets = [create_key(home) for _ in range(args.keys)]
            model = Path(base).name if Path(base).is_dir() else base
            started = time.time()
            recorder = asyncio.run(run_load(f"http://127.0.0.1:{port}", secrets, model, args.seconds))
            wall = time.time() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    table = recorder.table()
    server_errors = sum(n for route in table.values() for status, n in route["statuses"].items()
                        if status.isdigit() and int(status) >= 500)
    watched = [route for route in table if route == "health" or route.startswith("files_")]
    result = {"base": args.base if not args.tiny else "tiny", "keys": args.keys, "seconds": round(wall, 1),
              "routes": table, "server_errors": server_errors,
              "health_and_files_p99_under_200ms": all(table[route]["p99_ms"] < 200 for route in watched)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
