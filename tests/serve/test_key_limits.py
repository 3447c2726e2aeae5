"""Key scopes, per-key limits (OpenAI's 429 with Retry-After), revocation at once, keys list, no framing."""
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.serve.server import write_chat_file
from tunesmith.cli import app as cli_app
from tunesmith.registry import keys
from tunesmith.registry.db import Database
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as client:
        def key(scope="fine-tune", **limits):
            key_id, secret = keys.create_key(app.state.db, scope=scope)
            if limits:
                keys.set_limits(app.state.db, key_id, limits, "test")
            return key_id, {"Authorization": f"Bearer {secret}"}
        client.new_key = key
        client.chat = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "What is gold?"}],
                       "max_tokens": 4}
        yield client


def upload(api, headers, tmp_path):
    return api.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                    files={"file": ("t.jsonl", write_chat_file(tmp_path / "t.jsonl").read_bytes())})


def assert_429(response, kind):
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["code"] == "rate_limit_exceeded" and int(response.headers["retry-after"]) >= 1
    return error


def test_scopes_allow_what_they_name(api, tmp_path):
    _, writer = api.new_key()
    file_id = upload(api, writer, tmp_path).json()["id"]
    _, reader = api.new_key("read-only")
    _, inference = api.new_key("inference-only")
    job = {"model": api.chat["model"], "training_file": file_id}
    for headers in (reader, inference):
        assert api.get("/v1/models", headers=headers).status_code == 200
        response = upload(api, headers, tmp_path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
        assert api.post("/v1/fine_tuning/jobs", headers=headers, json=job).status_code == 403
    assert api.post("/v1/chat/completions", headers=reader, json=api.chat).status_code == 403
    assert api.post("/v1/chat/completions", headers=inference, json=api.chat).status_code == 200
    assert api.post("/v1/fine_tuning/jobs", headers=writer, json=job).status_code == 200


def test_a_revoked_key_is_refused_at_once(api):
    key_id, headers = api.new_key()
    assert api.get("/v1/models", headers=headers).status_code == 200
    assert keys.revoke_key(api.app.state.db, key_id)
    assert api.get("/v1/models", headers=headers).json()["error"]["code"] == "invalid_api_key"


def test_requests_at_once_are_limited_per_key(api):
    key_id, limited = api.new_key(max_concurrent=1)
    _, other = api.new_key()
    held = api.app.state.limits.admit(keys.list_keys(api.app.state.db)[0], 0)  # a request of the key in flight
    assert held.key_id == key_id
    error = assert_429(api.post("/v1/chat/completions", headers=limited, json=api.chat), "requests")
    assert "limit 1" in error["message"]
    assert api.post("/v1/chat/completions", headers=other, json=api.chat).status_code == 200
    held.release()
    assert api.post("/v1/chat/completions", headers=limited, json=api.chat).status_code == 200
    held = api.app.state.limits.admit(keys.list_keys(api.app.state.db)[0], 0)
    assert_429(api.post("/v1/moderations", headers=limited, json={"input": "hi"}), "requests")  # counted alike
    held.release()
    streamed = api.post("/v1/chat/completions", headers=limited, json={**api.chat, "stream": True})
    assert streamed.text.endswith("data: [DONE]\n\n")  # a finished stream gave its slot back
    assert api.post("/v1/chat/completions", headers=limited, json=api.chat).status_code == 200


def test_tokens_per_minute_are_limited_per_key(api):
    _, small = api.new_key(tokens_per_minute=20)
    assert "Request too large" in assert_429(api.post("/v1/chat/completions", headers=small,
                                                       json={**api.chat, "max_tokens": 30}), "tokens")["message"]
    _, headers = api.new_key(tokens_per_minute=100)
    first = api.post("/v1/chat/completions", headers=headers, json=api.chat).json()["usage"]["total_tokens"]
    spent = first
    while spent + first <= 100:
        spent += api.post("/v1/chat/completions", headers=headers, json=api.chat).json()["usage"]["total_tokens"]
    assert 1 <= int(api.post("/v1/chat/completions", headers=headers, json=api.chat).headers["retry-after"]) <= 60


def test_jobs_waiting_or_running_are_limited_per_key(api, tmp_path):
    _, headers = api.new_key(max_queued_jobs=1)
    job = {"model": api.chat["model"], "training_file": upload(api, headers, tmp_path).json()["id"]}
    first = api.post("/v1/fine_tuning/jobs", headers=headers, json=job).json()
    assert_429(api.post("/v1/fine_tuning/jobs", headers=headers, json=job), "requests")
    api.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=headers)
    assert api.post("/v1/fine_tuning/jobs", headers=headers, json=job).status_code == 200


def test_pages_cannot_be_framed(api):
    page = api.get("/ui")
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert api.get("/v1/models").headers["x-frame-options"] == "DENY"


def test_keys_list_scope_limits_and_revoke_through_the_cli(tmp_path):
    home = tmp_path / "home"
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "--home", str(home), "--name", "ci", "--scope", "read-only"])
    assert created.exit_code == 0, created.output
    key_id = keys.list_keys(Database(home / "tunesmith.sqlite"))[0].id
    for args in (["scope", key_id, "inference-only"], ["limits", key_id, "--concurrent", "2", "--jobs", "1"],
                 ["revoke", key_id]):
        result = runner.invoke(cli_app, ["keys", *args, "--home", str(home)])
        assert result.exit_code == 0, result.output
    listed = runner.invoke(cli_app, ["keys", "list", "--home", str(home)], env={"COLUMNS": "200"})
    row = next(line for line in listed.output.splitlines() if key_id in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1:7] == ["ci", "inference-only", "refuse", "2", "", "1"] and cells[8] == cells[7] != ""  # revoked today
    assert runner.invoke(cli_app, ["keys", "scope", key_id, "fine-tune", "--home", str(home)]).exit_code != 0
