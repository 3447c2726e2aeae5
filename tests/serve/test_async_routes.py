"""A real uvicorn server in-process, its tiny model slowed to 20 ms a step: a non-streaming client that
disconnects stops its generation, and generations hold no worker threads, so health and file routes answer
while 45 of them run, long before any finishes."""
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from tests.serve.server import free_port
from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

STEP_S = 0.02


@pytest.fixture
def live(tmp_path, tiny_model_dir):
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    served = app.state.pool.get(tiny_model_dir.name, str(tiny_model_dir)).slot.batcher.served
    served.model.register_forward_pre_hook(lambda *args: time.sleep(STEP_S))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield app, f"http://127.0.0.1:{port}", served.batcher, port
    server.should_exit = True
    thread.join(timeout=30)


def bearer(app) -> dict:
    return {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}


def chat(model: str, max_tokens: int) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "What is gold?"}], "max_tokens": max_tokens,
            "temperature": 1.0, "seed": 1}


def test_a_non_streaming_request_stops_when_its_client_disconnects(live, tiny_model_dir):
    app, _, batcher, port = live
    body = json.dumps({**chat(tiny_model_dir.name, 400), "n": 4}).encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in {**bearer(app), "Content-Type": "application/json",
                                                    "Content-Length": str(len(body)), "Host": "x"}.items())
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(f"POST /v1/chat/completions HTTP/1.1\r\n{headers}\r\n".encode() + body)
    while batcher.stats.steps < 10:
        time.sleep(0.01)
    client.close()
    time.sleep(1.0)  # the disconnect is noticed, the rows leave the batch
    steps = batcher.stats.steps
    time.sleep(1.0)
    assert batcher.stats.steps == steps < 200  # 400 steps (8 s) if it ran on for nobody


def test_health_and_file_routes_answer_while_generations_fill_the_server(live, tiny_model_dir):
    app, url, batcher, _ = live
    users = [bearer(app) for _ in range(3)]  # 15 requests each: under the per-key limit of 16
    answers = []

    def generate(headers):
        answers.append(httpx.post(f"{url}/v1/chat/completions", headers=headers, json=chat(tiny_model_dir.name, 150),
                                  timeout=120).status_code)

    threads = [threading.Thread(target=generate, args=(users[i % 3],)) for i in range(45)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 30
    while batcher.stats.largest_batch < 45:  # all 45 generate at once (3 s each); a 40-thread pool held 40
        assert time.time() < deadline, f"at most {batcher.stats.largest_batch} requests generated at once"
        time.sleep(0.01)
    steps_when_answered = []
    for path in ("/health", "/v1/files", "/v1/models"):
        assert httpx.get(f"{url}{path}", headers=users[0], timeout=60).status_code == 200
        steps_when_answered.append(batcher.stats.steps)
    for thread in threads:
        thread.join()
    assert answers == [200] * 45
    # Each route answered mid-generation: a route that queued behind a generation would answer only after one
    # finished, 150 steps on. Steps, not seconds: the test process's 45 client threads share one GIL on 2 cores.
    assert max(steps_when_answered) < 150, steps_when_answered
