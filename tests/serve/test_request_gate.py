"""The request gate, called as ASGI directly so the test sees every `receive`: the key is checked before any
of the body is read, declared and streamed (chunked) bodies are capped, uploads too."""
import asyncio
import json

import pytest

from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def app(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], max_upload_bytes=4000,
                             max_request_bytes=100_000, run_jobs=False)
    return create_app(settings)


def call(app, path: str, headers: dict, chunks, method: str = "POST") -> tuple[int, dict, int]:
    """(status, JSON body, chunks the app received) for a request whose body arrives as `chunks`."""
    chunks, taken, answer = list(chunks), [0], {}

    async def receive():
        if taken[0] < len(chunks):
            taken[0] += 1
            return {"type": "http.request", "body": chunks[taken[0] - 1], "more_body": taken[0] < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "http_version": "1.1",
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    return answer["status"], json.loads(answer["body"]), taken[0]


def bearer(app) -> dict:
    return {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}


def test_no_key_is_401_before_one_byte_of_the_body_is_read(app, tiny_model_dir):
    body = json.dumps({"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    for auth in ({}, {"Authorization": "Bearer wrong"}):
        status, answer, taken = call(app, "/v1/chat/completions", {**headers, **auth}, [body])
        assert status == 401 and answer["error"]["type"] == "authentication_error" and taken == 0
    status, answer, taken = call(app, "/v1/files", {"content-type": "multipart/form-data; boundary=x"}, [b"--x"])
    assert status == 401 and taken == 0


def test_a_declared_body_over_the_cap_is_413_unread(app):
    headers = {**bearer(app), "content-type": "application/json", "content-length": str(10**10)}
    status, answer, taken = call(app, "/v1/chat/completions", headers, [b"{}"])
    assert status == 413 and answer["error"]["code"] == "request_too_large" and taken == 0


def test_a_streamed_json_body_is_cut_off_at_the_cap(app):
    chunks = [b'{"model": "x", "messages": ["' + b"a" * 10_000] + [b"a" * 10_000] * 99 + [b'"]}']
    status, answer, taken = call(app, "/v1/chat/completions", {**bearer(app), "content-type": "application/json"}, chunks)
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert taken <= 11  # 100 kB cap: stops at the 11th 10 kB chunk of 101


def test_a_chunked_upload_is_cut_off_while_it_streams(app):
    head = (b'--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n')
    chunks = [head] + [b'{"text": "' + b"a" * 100_000 + b'"}\n'] * 50 + [b"\r\n--x--\r\n"]
    headers = {**bearer(app), "content-type": "multipart/form-data; boundary=x"}
    status, answer, taken = call(app, "/v1/files", headers, chunks)
    assert status == 413 and answer["error"]["param"] == "file" and taken <= 2  # 4000 + 64 KiB cap: 1 row fits
    assert not list(app.state.settings.files_dir.glob("*"))


def test_openapi_schema_needs_a_key_and_docs_are_off(app):
    assert call(app, "/openapi.json", {}, [], method="GET")[0] == 401
    assert call(app, "/openapi.json", bearer(app), [], method="GET")[0] == 200
    assert call(app, "/docs", bearer(app), [], method="GET")[0] == 404
