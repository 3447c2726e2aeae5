"""OpenAI's Batch API on the tiny model, through the official client: answers as the routes give them, the input
checked by line, cancelling, and a stopped server's batch resumed without answering anything twice."""
import json
import time

import pytest
from fastapi.testclient import TestClient

from tunesmith.registry import batches, keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


def serving(home, tiny_model_dir, **settings):
    return TestClient(create_app(ServeSettings(home=home, bases=[str(tiny_model_dir)], run_jobs=False, **settings)))


def official_client(api, secret):
    import openai

    return openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=api, max_retries=0)


def request_line(custom_id, model, content, url="/v1/chat/completions", **body):
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": content}], **body}}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def finished(client, batch_id, timeout=60):
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)
    return batch


def by_custom_id(text: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    found = {line["custom_id"]: line for line in lines}
    assert len(found) == len(lines)  # each request answered once
    return found


@pytest.fixture
def served(tmp_path, tiny_model_dir):
    with serving(tmp_path / "home", tiny_model_dir) as api:
        secret = keys.create_key(api.app.state.db)[1]
        yield official_client(api, secret), tiny_model_dir.name


def test_a_batch_answers_each_request_as_its_route_does(served):
    client, model = served
    rows = [request_line(f"q{i}", model, f"question {i}", max_tokens=5, temperature=0) for i in range(4)]
    rows.append(request_line("too-hot", model, "question", temperature=5))
    rows.append({**request_line("prompted", model, ""), "url": "/v1/chat/completions"} | {
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 2,
                 "logit_bias": {"5": 100}}})
    shape = {"type": "object", "properties": {"metal": {"type": "boolean"}}, "required": ["metal"],
             "additionalProperties": False}
    rows.append(request_line("shaped", model, "question", max_tokens=20, temperature=0, response_format={
        "type": "json_schema", "json_schema": {"name": "shape", "schema": shape}}))
    upload = client.files.create(file=("requests.jsonl", jsonl(rows)), purpose="batch")
    assert upload.status == "processed"
    created = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"run": "nightly"})
    assert created.status == "validating" and created.metadata == {"run": "nightly"}
    batch = finished(client, created.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (7, 6, 1)
    assert batch.in_progress_at and batch.completed_at and batch.expires_at - batch.created_at == 24 * 3600
    answers = by_custom_id(client.files.content(batch.output_file_id).text)
    assert set(answers) == {"q0", "q1", "q2", "q3", "prompted", "shaped"}
    assert json.loads(answers["shaped"]["response"]["body"]["choices"][0]["message"]["content"]) in (
        {"metal": True}, {"metal": False})
    for row in rows[:4] + rows[5:]:
        direct = client.chat.completions.create(**row["body"])
        answer = answers[row["custom_id"]]["response"]
        assert answer["status_code"] == 200 and answer["body"]["object"] == "chat.completion"
        assert [c["message"]["content"] for c in answer["body"]["choices"]] == [c.message.content for c in direct.choices]
        assert answer["body"]["usage"]["completion_tokens"] == direct.usage.completion_tokens
    (failure,) = by_custom_id(client.files.content(batch.error_file_id).text).values()
    assert failure["custom_id"] == "too-hot" and failure["response"]["status_code"] == 400
    assert failure["response"]["body"]["error"]["param"] == "temperature"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert [b.id for b in client.batches.list()] == [batch.id]


def test_a_text_completion_batch(served, monkeypatch):
    from tunesmith.serve.batcher import Batcher

    submitted, submit = [], Batcher.submit

    def recorded(self, *args, **kwargs):
        request = submit(self, *args, **kwargs)
        submitted.append(request.background)
        return request

    monkeypatch.setattr(Batcher, "submit", recorded)
    client, model = served
    rows = [{"custom_id": f"p{i}", "method": "POST", "url": "/v1/completions",
             "body": {"model": model, "prompt": f"Once {i}", "max_tokens": 4, "temperature": 0}} for i in range(3)]
    upload = client.files.create(file=("prompts.jsonl", jsonl(rows)), purpose="batch")
    batch = finished(client, client.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                                                   completion_window="24h").id)
    answers = by_custom_id(client.files.content(batch.output_file_id).text)
    for row in rows:
        direct = client.completions.create(**row["body"])
        assert answers[row["custom_id"]]["response"]["body"]["choices"][0]["text"] == direct.choices[0].text
    assert batch.error_file_id is None
    # the batch's rows yield to interactive ones (serve/batcher.py); the client's own requests above do not
    assert submitted == [True] * 3 + [False] * 3


def test_the_input_file_is_checked_line_by_line_when_uploaded(served):
    import openai

    client, model = served
    good = request_line("ok", model, "hi")
    rows = [json.dumps(good), "{not json", json.dumps({**good, "custom_id": ""}), json.dumps(good),
            json.dumps({**good, "custom_id": "a", "method": "GET"}),
            json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}),
            json.dumps({**good, "custom_id": "c", "url": "/v1/completions"}),
            json.dumps({**good, "custom_id": "d", "body": {**good["body"], "model": "other"}}),
            json.dumps({**good, "custom_id": "e", "body": {**good["body"], "stream": True}}),
            json.dumps({**good, "custom_id": "f", "extra": 1})]
    with pytest.raises(openai.BadRequestError) as raised:
        client.files.create(file=("bad.jsonl", "\n".join(rows).encode()), purpose="batch")
    message = raised.value.message
    for expected in ["line 2, line: not valid JSON", "line 3, custom_id: missing", "line 4, custom_id: 'ok' is also "
                     "the custom_id of line 1", "line 5, method", "line 6, url", "line 7, url: /v1/completions: the "
                     "file's earlier lines name /v1/chat/completions", "line 8, body.model", "line 9, body.stream",
                     "line 10, extra: unknown key"]:
        assert expected in message
    assert "line 1," not in message and list(client.files.list()) == []  # nothing stored


def test_creating_a_batch_checks_endpoint_window_and_file(served):
    import openai

    client, model = served
    rows = jsonl([request_line("t", model, "hi", max_tokens=2)])
    for_chat = client.files.create(file=("chat.jsonl", rows), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=for_chat.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=for_chat.id, endpoint="/v1/chat/completions", completion_window="1h")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-" + "0" * 24, endpoint="/v1/chat/completions", completion_window="24h")
    training = client.files.create(file=("train.jsonl", json.dumps({"messages": [{"role": "user", "content": "a"}, {
        "role": "assistant", "content": "b"}]}).encode()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(input_file_id=training.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="purpose 'fine-tune'"):
        client.fine_tuning.jobs.create(model=model, training_file=for_chat.id)
    mismatched = client.batches.create(input_file_id=for_chat.id, endpoint="/v1/completions", completion_window="24h")
    batch = finished(client, mismatched.id)
    assert batch.status == "failed" and batch.failed_at and batch.errors.data[0].code == "mismatched_endpoint"
    assert batch.output_file_id is None and batch.error_file_id is None


def test_cancelling_keeps_the_answers_so_far_and_the_input_cannot_be_deleted_meanwhile(tmp_path, tiny_model_dir):
    import openai

    with serving(tmp_path / "home", tiny_model_dir, batch_concurrency=2) as api:
        client = official_client(api, keys.create_key(api.app.state.db)[1])
        model = tiny_model_dir.name
        rows = [request_line(f"r{i}", model, f"q {i}", max_tokens=200, temperature=0) for i in range(64)]
        upload = client.files.create(file=("many.jsonl", jsonl(rows)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.ConflictError):
            client.files.delete(upload.id)
        assert client.batches.cancel(batch.id).status == "cancelling"
        batch = finished(client, batch.id)
        assert batch.status == "cancelled" and batch.cancelling_at and batch.cancelled_at
        assert batch.request_counts.completed < 64
        if batch.request_counts.completed:
            answered = by_custom_id(client.files.content(batch.output_file_id).text)
            assert len(answered) == batch.request_counts.completed
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch.id)
        assert client.files.delete(upload.id).deleted


def test_a_stopped_servers_batch_is_resumed_without_answering_twice(tmp_path, tiny_model_dir):
    home, model = tmp_path / "home", tiny_model_dir.name
    rows = [request_line(f"r{i}", model, f"q {i}", max_tokens=3, temperature=0) for i in range(5)]
    with serving(home, tiny_model_dir) as api:
        key_id, secret = keys.create_key(api.app.state.db)
        upload = official_client(api, secret).files.create(file=("five.jsonl", jsonl(rows)), purpose="batch")
        # what a server stopped while answering leaves: the batch in progress, two answers and a torn third
        batch = batches.create_batch(api.app.state.db, key_id, "/v1/chat/completions", upload.id, "24h", None)
        batches.move(api.app.state.db, batch, "in_progress", total=5)
        kept = {"id": "batch_req_kept", "custom_id": "r1", "response": {"status_code": 200, "body": {}}, "error": None}
        failed = {"id": "batch_req_failed", "custom_id": "r3", "response": {"status_code": 400, "body": {}}, "error": None}
        directory = home / "batches" / batch.id
        directory.mkdir(parents=True)
        (directory / "output.jsonl").write_text(json.dumps(kept) + "\n" + json.dumps(kept)[:-9].replace("r1", "r2"))
        (directory / "errors.jsonl").write_text(json.dumps(failed) + "\n")
    with serving(home, tiny_model_dir) as api:  # the next start
        client = official_client(api, secret)
        resumed = finished(client, batch.id)
        assert resumed.status == "completed" and resumed.request_counts.completed == 4
        answers = by_custom_id(client.files.content(resumed.output_file_id).text)
        assert set(answers) == {"r0", "r1", "r2", "r4"} and answers["r1"] == kept  # r1 was not answered again
        assert by_custom_id(client.files.content(resumed.error_file_id).text) == {"r3": failed}
        assert not directory.exists()


def test_a_server_error_fails_the_batch_and_keeps_its_answers_so_far(served, monkeypatch):
    from tunesmith.serve import batches as runner

    client, model = served
    rows = [request_line(f"r{i}", model, f"q {i}", max_tokens=2, temperature=0) for i in range(3)]
    upload = client.files.create(file=("three.jsonl", jsonl(rows)), purpose="batch")
    real_finish = runner.BatchRunner.finish
    calls = []

    def finish_once_broken(self, batch):
        calls.append(batch.status)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_finish(self, batch)

    monkeypatch.setattr(runner.BatchRunner, "finish", finish_once_broken)
    batch = finished(client, client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                   completion_window="24h").id)
    assert batch.status == "failed" and batch.errors.data[0].code == "server_error"
    assert set(by_custom_id(client.files.content(batch.output_file_id).text)) == {"r0", "r1", "r2"}


def test_a_moderation_batch_labels_texts_as_the_route_does(tmp_path, tiny_model_dir, tokenizer):
    from tests.serve.keyword_classifier import save_keyword_classifier

    classifier = save_keyword_classifier(tmp_path / "moderation", tokenizer, [353])  # " helium" flags
    with serving(tmp_path / "home", tiny_model_dir, moderation_model=classifier) as api:
        client = official_client(api, keys.create_key(api.app.state.db)[1])
        texts = ["What is gold?", "Tell me about helium", [{"type": "image_url", "image_url": {"url": "x.png"}}]]
        rows = [{"custom_id": f"t{i}", "method": "POST", "url": "/v1/moderations", "body": {"input": text}}
                for i, text in enumerate(texts)]  # no model: OpenAI's default, omni-moderation-latest
        upload = client.files.create(file=("texts.jsonl", jsonl(rows)), purpose="batch")
        batch = finished(client, client.batches.create(input_file_id=upload.id, endpoint="/v1/moderations",
                                                       completion_window="24h").id)
        answers = by_custom_id(client.files.content(batch.output_file_id).text)
        for i in (0, 1):
            direct = client.moderations.create(input=texts[i])
            body = answers[f"t{i}"]["response"]["body"]
            assert body["model"] == "omni-moderation-latest"
            assert [r["flagged"] for r in body["results"]] == [r.flagged for r in direct.results] == [i == 1]
            assert body["results"][0]["category_scores"] == direct.results[0].category_scores.model_dump(by_alias=True)
        (failure,) = by_custom_id(client.files.content(batch.error_file_id).text).values()
        assert failure["custom_id"] == "t2" and failure["response"]["status_code"] == 400
        assert failure["response"]["body"]["error"]["code"] == "unsupported_input"  # the route's own refusal


def test_a_responses_batch_answers_as_the_route_does(served):
    client, model = served
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
             "body": {"model": model, "input": f"Question {i}?", "instructions": "Be brief.", "max_output_tokens": 5,
                      "temperature": 0, "store": False}} for i in range(3)]
    upload = client.files.create(file=("responses.jsonl", jsonl(rows)), purpose="batch")
    batch = finished(client, client.batches.create(input_file_id=upload.id, endpoint="/v1/responses",
                                                   completion_window="24h").id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    answers = by_custom_id(client.files.content(batch.output_file_id).text)
    for row in rows:
        direct = client.responses.create(**row["body"])
        body = answers[row["custom_id"]]["response"]["body"]
        assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == direct.output_text
        assert body["usage"]["output_tokens"] == direct.usage.output_tokens
