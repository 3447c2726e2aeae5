"""The API in-process (no job worker): error shapes and codes, auth, upload cap, path safety, state changes."""
import pytest
from fastapi.testclient import TestClient

from tests.serve.server import write_chat_file
from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], max_upload_bytes=4000, run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as client:
        client.key = lambda: {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}
        yield client


def upload(api, headers, path, name="train.jsonl"):
    return api.post("/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": (name, path.read_bytes())})


def assert_error(response, status, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_requests_without_a_valid_key_get_401(api):
    assert assert_error(api.get("/v1/models"), 401)["type"] == "authentication_error"
    assert_error(api.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401)
    assert api.get("/v1/models", headers=api.key()).status_code == 200


def test_upload_over_the_cap_is_413_and_leaves_nothing(api, tmp_path):
    headers = api.key()
    big = tmp_path / "big.jsonl"
    big.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() * 20)
    assert_error(upload(api, headers, big), 413, "file")
    assert api.get("/v1/files", headers=headers).json()["data"] == []
    assert not any((tmp_path / "home" / "files").glob("*"))


def test_invalid_rows_make_the_file_an_error_naming_their_line_and_purpose_is_checked(api, tmp_path):
    headers = api.key()
    path = tmp_path / "bad.jsonl"
    path.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() + '{"messages": "nope"}\n')
    bad = upload(api, headers, path).json()  # stored as `uploaded`; the full check then refuses its rows
    assert api.app.state.file_checks.wait(bad["id"], 60)
    checked = api.get(f"/v1/files/{bad['id']}", headers=headers).json()
    assert checked["status"] == "error" and "line 11" in checked["status_details"]
    assert api.delete(f"/v1/files/{bad['id']}", headers=headers).status_code == 200
    good = write_chat_file(tmp_path / "ok.jsonl")
    response = api.post("/v1/files", headers=headers, data={"purpose": "assistants"}, files={"file": ("a", b"{}")})
    assert_error(response, 400, "purpose")
    stored = upload(api, headers, good, name="../../etc/passwd").json()
    assert stored["filename"] == "passwd"
    assert [p.name for p in (tmp_path / "home" / "files").iterdir()] == [stored["id"] + ".jsonl"]


def test_ids_are_never_paths_and_other_keys_get_404(api, tmp_path):
    alice, bob = api.key(), api.key()
    file_id = upload(api, alice, write_chat_file(tmp_path / "t.jsonl")).json()["id"]
    # with the owner's key, so that ownership alone cannot be what answers 404
    for path in ["/v1/files/..%2F..%2Ftunesmith.sqlite/content", "/v1/files/../tunesmith.sqlite",
                 f"/v1/files/{file_id}%2F..%2F..%2Ftunesmith.sqlite/content",
                 f"/v1/files/..%2F{file_id}.jsonl/content", "/v1/files/%2E%2E%2Ftunesmith.sqlite/content"]:
        response = api.get(path, headers=alice)
        assert response.status_code == 404 and b"SQLite" not in response.content, path
    assert api.get(f"/v1/files/{file_id}/content", headers=bob).status_code == 404
    assert api.get(f"/v1/files/{file_id}/content", headers=alice).content == (tmp_path / "t.jsonl").read_bytes()


def test_job_state_changes_and_409s(api, tmp_path, tiny_model_dir):
    headers = api.key()
    file_id = upload(api, headers, write_chat_file(tmp_path / "t.jsonl")).json()["id"]
    body = {"model": tiny_model_dir.name, "training_file": file_id}
    assert_error(api.post("/v1/fine_tuning/jobs", headers=headers, json={**body, "model": "gpt-9"}), 404, "model")
    assert_error(api.post("/v1/fine_tuning/jobs", headers=headers, json={**body, "suffix": "a b"}), 400, "suffix")
    bad_method = {**body, "method": {"type": "dpo"}}
    assert_error(api.post("/v1/fine_tuning/jobs", headers=headers, json=bad_method), 400)
    job = api.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()
    assert job["hyperparameters"] == {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert_error(api.post(f"/v1/fine_tuning/jobs/{job['id']}/resume", headers=headers), 409)
    assert_error(api.delete(f"/v1/files/{file_id}", headers=headers), 409)  # an unfinished job needs it
    assert api.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=headers).json()["status"] == "cancelled"
    assert_error(api.post(f"/v1/fine_tuning/jobs/{job['id']}/pause", headers=headers), 409)
    assert api.delete(f"/v1/files/{file_id}", headers=headers).json()["deleted"]
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=headers).json()["data"]
    assert [e["message"] for e in events][0] == "Job cancelled by the user"


def test_bad_sampling_parameters_are_400_and_base_models_cannot_be_deleted(api, tiny_model_dir):
    headers = api.key()
    chat = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}]}
    assert_error(api.post("/v1/chat/completions", headers=headers, json={**chat, "temperature": 3}), 400, "temperature")
    assert_error(api.post("/v1/chat/completions", headers=headers, json={**chat, "stop": list("abcde")}), 400, "stop")
    assert_error(api.post("/v1/chat/completions", headers=headers, json={**chat, "model": "nope"}), 404, "model")
    too_long = {**chat, "max_tokens": 10_000}
    assert assert_error(api.post("/v1/chat/completions", headers=headers, json=too_long), 400)["code"] == "context_length_exceeded"
    assert_error(api.delete(f"/v1/models/{tiny_model_dir.name}", headers=headers), 403)


def test_parameters_the_server_does_not_implement_are_refused_unless_they_ask_for_nothing(api, tiny_model_dir):
    headers = api.key()
    chat = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    asking = [("functions", [{"name": "f", "parameters": {}}]), ("function_call", "auto"), ("store", True),
              ("audio", {"voice": "alloy", "format": "wav"}), ("modalities", ["text", "audio"]),
              ("prediction", {"type": "content", "content": "hi"}), ("reasoning_effort", "high"),
              ("verbosity", "low"), ("web_search_options", {})]
    for name, value in asking:
        error = assert_error(api.post("/v1/chat/completions", headers=headers, json={**chat, name: value}), 400, name)
        assert error["code"] == "unsupported_parameter" and f"'{name}'" in error["message"]
    inert = {"logprobs": False, "functions": [], "function_call": "none", "tools": [], "tool_choice": "none",
             "response_format": {"type": "text"}, "user": "someone", "store": False, "metadata": {"team": "support"},
             "modalities": ["text"], "reasoning_effort": "none", "verbosity": "medium", "service_tier": "auto",
             "prompt_cache_key": "k", "prompt_cache_retention": "24h", "safety_identifier": "u1"}
    assert api.post("/v1/chat/completions", headers=headers, json={**chat, **inert}).status_code == 200
    prompt = {"model": tiny_model_dir.name, "prompt": "hi", "max_tokens": 2}
    for name, value in [("echo", True), ("best_of", 2), ("suffix", "end")]:
        assert_error(api.post("/v1/completions", headers=headers, json={**prompt, name: value}), 400, name)
    inert = {"echo": False, "best_of": 1, "suffix": None, "user": "someone"}
    assert api.post("/v1/completions", headers=headers, json={**prompt, **inert}).status_code == 200
    # a field OpenAI's API does not have asks for something this server cannot know: refused by name, not ignored
    for path, body in [("/v1/chat/completions", chat), ("/v1/completions", prompt)]:
        error = assert_error(api.post(path, headers=headers, json={**body, "temprature": 0}), 400, "temprature")
        assert error["code"] == "unknown_parameter" and error["message"] == "Unknown parameter: 'temprature'."


def test_chat_logprobs_through_the_official_client_streamed_or_not(api, tiny_model_dir):
    import openai

    key = api.key()["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api, max_retries=0)
    asked = dict(model=tiny_model_dir.name, messages=[{"role": "user", "content": "hi"}], max_tokens=6, temperature=0)
    choice = client.chat.completions.create(**asked, logprobs=True, top_logprobs=2).choices[0]
    content = choice.logprobs.content
    assert content and b"".join(bytes(item.bytes) for item in content).decode() == choice.message.content
    for item in content:
        assert len(item.top_logprobs) == 2 and item.top_logprobs[0].logprob >= item.top_logprobs[1].logprob
        assert item.logprob <= 0 and item.token == item.top_logprobs[0].token  # greedy: the likeliest token
    stream = client.chat.completions.create(**asked, logprobs=True, top_logprobs=2, stream=True)
    streamed = [item for chunk in stream for c in chunk.choices if c.logprobs for item in c.logprobs.content]
    assert [(i.token, round(i.logprob, 4)) for i in streamed] == [(i.token, round(i.logprob, 4)) for i in content]
    plain = client.chat.completions.create(**asked).choices[0]
    assert plain.logprobs is None and plain.message.content == choice.message.content
    with pytest.raises(openai.BadRequestError, match="'logprobs' must be true"):
        client.chat.completions.create(**asked, top_logprobs=2)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.completions.create(model=tiny_model_dir.name, prompt="hi", max_tokens=2, logprobs=6)  # OpenAI's max: 5


def test_legacy_completion_logprobs_in_openais_shape_streamed_or_not(api, tiny_model_dir):
    import openai

    key = api.key()["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api, max_retries=0)
    asked = dict(model=tiny_model_dir.name, prompt="Once upon", max_tokens=6, temperature=0, logit_bias={"5": 4})
    choice = client.completions.create(**asked, logprobs=2).choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text and len(logprobs.tokens) == 6
    assert logprobs.text_offset[0] == len("Once upon")  # offsets count from the prompt's start, as OpenAI's
    assert [b - a for a, b in zip(logprobs.text_offset, logprobs.text_offset[1:])] == [len(t) for t in logprobs.tokens[:-1]]
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert logprob <= 0 and top[token] == logprob and 2 <= len(top) <= 3  # the chosen token is always there
    streamed = list(client.completions.create(**asked, logprobs=2, stream=True))
    tokens = [t for chunk in streamed for c in chunk.choices if c.logprobs for t in c.logprobs.tokens]
    offsets = [o for chunk in streamed for c in chunk.choices if c.logprobs for o in c.logprobs.text_offset]
    assert tokens == logprobs.tokens and offsets == logprobs.text_offset
    zero = client.completions.create(**asked, logprobs=0).choices[0].logprobs
    assert [list(top) for top in zero.top_logprobs] == [[t] for t in zero.tokens]  # the chosen token alone
    assert client.completions.create(**asked).choices[0].logprobs is None


def test_penalties_and_logit_bias_through_the_official_client_and_their_limits(api, tiny_model_dir, tokenizer):
    import openai

    key = api.key()["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api, max_retries=0)
    asked = dict(model=tiny_model_dir.name, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    forced = tokenizer.convert_tokens_to_ids("a")
    assert client.chat.completions.create(**asked, logit_bias={str(forced): 100}).choices[0].message.content == "aaaa"
    plain = client.chat.completions.create(**asked, temperature=0).choices[0].message.content
    penalised = client.chat.completions.create(**asked, temperature=0, frequency_penalty=2, presence_penalty=1)
    assert penalised.choices[0].message.content != plain  # the tiny model repeats itself unless penalised
    legacy = client.completions.create(model=tiny_model_dir.name, prompt="hi", max_tokens=3,
                                       logit_bias={str(forced): 100})
    assert legacy.choices[0].text == "aaa"
    for name, value, says in [("frequency_penalty", 2.5, "less than or equal to 2"),
                              ("presence_penalty", -3, "greater than or equal to -2"),
                              ("logit_bias", {"x1": 5}, "non-negative integers"),
                              ("logit_bias", {"²": 5}, "non-negative integers"),  # a digit to isdigit, not to int
                              ("logit_bias", {str(10 ** 9): 5}, "token ids end at"),
                              ("logit_bias", {"5": 101}, "between -100 and 100")]:
        with pytest.raises(openai.BadRequestError, match=says) as raised:
            client.chat.completions.create(**asked, **{name: value})
        assert raised.value.param == name, (name, value)


def test_stop_strings_are_capped_in_count_and_length_with_openais_error(api, tiny_model_dir):
    headers = api.key()
    chat = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    error = assert_error(api.post("/v1/chat/completions", headers=headers, json={**chat, "stop": list("abcde")}), 400, "stop")
    assert error["code"] == "array_above_max_length" and "maximum length 4" in error["message"]
    long_stop = {**chat, "stop": ["ok", "x" * 257]}
    error = assert_error(api.post("/v1/chat/completions", headers=headers, json=long_stop), 400, "stop[1]")
    assert error["code"] == "string_above_max_length" and "257" in error["message"]
    prompt = {"model": tiny_model_dir.name, "prompt": "hi", "max_tokens": 2, "stop": "y" * 257}
    assert_error(api.post("/v1/completions", headers=headers, json=prompt), 400, "stop[0]")
    assert api.post("/v1/chat/completions", headers=headers, json={**chat, "stop": ["x" * 256] * 4}).status_code == 200
