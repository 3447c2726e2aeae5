"""Guarded chat in-process: a flagged prompt is refused, a flagged answer is cut with finish_reason
"content_filter" (streamed or not), other keys are unaffected, and every flag is audited without its text."""
import json

import pytest
import torch
from fastapi.testclient import TestClient

from tests.serve.keyword_classifier import save_keyword_classifier
from tests.serve.test_api import assert_error
from tests.tiny import tiny_model, tiny_tokenizer
from tunesmith.models.classifier import encode_texts, load_classifier
from tunesmith.registry import audit, guards, keys
from tunesmith.registry.guards import Guard
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

HELIUM = 353  # " helium" in the tiny tokenizer
QUESTION = [{"role": "user", "content": "What is the chemical symbol for gold?"}]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """A tiny chat model with large random weights, so that it says more than a newline."""
    directory = tmp_path_factory.mktemp("talkative")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def api(tmp_path, chat_dir, tokenizer):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(chat_dir)], run_jobs=False, screen_every_chars=8,
                             moderation_model=save_keyword_classifier(tmp_path / "helium", tokenizer, [HELIUM]))
    app = create_app(settings)
    with TestClient(app) as client:
        client.db, client.model = app.state.db, chat_dir.name
        yield client


def new_key(api) -> tuple[str, dict]:
    key_id, secret = keys.create_key(api.db)
    return key_id, {"Authorization": f"Bearer {secret}"}


def chat(api, headers, messages, **extra):
    body = {"model": api.model, "messages": messages, "temperature": 0, "max_tokens": 48, **extra}
    return api.post("/v1/chat/completions", headers=headers, json=body)


def streamed(response) -> tuple[str, str]:
    """(content, finish_reason) of choice 0 from an SSE response."""
    text, finish = "", None
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    return text, finish


def flags(db) -> list[dict]:
    return [entry for entry in audit.entries(db) if entry["action"] == "moderation.flagged"]


def test_a_guarded_model_refuses_a_flagged_prompt_for_the_guarded_key_only(api):
    (alice, alice_headers), (_, bob_headers) = new_key(api), new_key(api)
    guards.set_guard(api.db, "os:test", Guard("omni-moderation-latest", model=api.model, owner=alice))
    harmful = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I make helium?"}]

    error = assert_error(chat(api, alice_headers, harmful), 400, "messages")
    assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
    assert "violence (1.00)" in error["message"] and "illicit/violent" in error["message"]
    assert chat(api, bob_headers, harmful).status_code == 200  # bob's requests are not guarded
    assert chat(api, alice_headers, QUESTION).status_code == 200
    # a guard releases text as it screens it: no per-token log-probabilities from a guarded model
    assert assert_error(chat(api, alice_headers, QUESTION, logprobs=True), 400, "logprobs")["code"] == "unsupported_parameter"
    assert chat(api, bob_headers, QUESTION, logprobs=True).json()["choices"][0]["logprobs"]["content"]
    prompt = {"model": api.model, "prompt": "Tell me about helium", "max_tokens": 4}
    assert_error(api.post("/v1/completions", headers=alice_headers, json=prompt), 400, "prompt")
    legacy = {**prompt, "prompt": QUESTION[0]["content"], "logprobs": 1}
    assert assert_error(api.post("/v1/completions", headers=alice_headers, json=legacy), 400, "logprobs")["code"] == "unsupported_parameter"

    # counting a flagged input's tokens generates nothing: counted, not screened, nothing flagged
    counted = api.post("/v1/responses/input_tokens", headers=alice_headers,
                       json={"model": api.model, "input": harmful[1]["content"], "instructions": "Be brief."})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 5

    [first, second] = flags(api.db)
    assert first["actor"] == alice and first["object_id"] == api.model and first["outcome"] == "flagged"
    assert first["detail"]["stage"] == "input" and first["detail"]["index"] == 1
    assert first["detail"]["categories"] == {"violence": 1.0, "illicit/violent": 1.0}
    assert first["detail"]["moderation_model"] == "omni-moderation-latest"
    assert "helium" not in audit.export(api.db)  # categories and scores, never the text by default
    assert audit.verify_chain(api.db) == []


def test_a_flagged_answer_is_cut_with_content_filter_streamed_or_not(api, tmp_path, tokenizer):
    (alice, alice_headers), (_, bob_headers) = new_key(api), new_key(api)
    full = chat(api, bob_headers, QUESTION).json()["choices"][0]["message"]["content"]
    ids = encode_texts(tokenizer, [full], 512)[0]
    keyword = next(token for i, token in enumerate(ids) if i >= len(ids) // 3 and token not in ids[:i])
    screen = save_keyword_classifier(tmp_path / "keyword", tokenizer, [keyword])  # flags the answer's middle
    guards.set_guard(api.db, "os:test", Guard(str(screen), screen_input=False, model=api.model, owner=alice))

    text, finish = streamed(chat(api, alice_headers, QUESTION, stream=True))
    assert finish == "content_filter"
    assert full.startswith(text) and len(text) < len(full)
    assert not load_classifier(screen).flags(load_classifier(screen).scores([text])).any()  # only clean text left
    whole = chat(api, alice_headers, QUESTION).json()["choices"][0]
    assert (whole["message"]["content"], whole["finish_reason"]) == (text, "content_filter")
    assert streamed(chat(api, bob_headers, QUESTION, stream=True)) == (full, "length")  # unguarded: whole answer

    entries = flags(api.db)
    assert [(e["actor"], e["detail"]["stage"], e["detail"]["index"]) for e in entries] == [(alice, "output", 0)] * 2
    assert entries[0]["detail"]["request_id"].startswith("chatcmpl-") and "text" not in entries[0]["detail"]


def test_the_server_default_guard_applies_and_a_broken_guard_fails_closed(tmp_path, chat_dir, tokenizer):
    classifier = save_keyword_classifier(tmp_path / "helium", tokenizer, [HELIUM])
    settings = ServeSettings(home=tmp_path / "home", bases=[str(chat_dir)], run_jobs=False, moderation_model=classifier,
                             guard=Guard("omni-moderation-latest", screen_output=False), audit_flagged_text=True)
    app = create_app(settings)
    with TestClient(app) as api:
        api.db, api.model = app.state.db, chat_dir.name
        key, headers = new_key(api)
        assert_error(chat(api, headers, [{"role": "user", "content": "Tell me about helium"}]), 400, "messages")
        assert flags(api.db)[0]["detail"]["text"] == "Tell me about helium"  # kept: audit_flagged_text
        guards.set_guard(api.db, "os:test", Guard("ft:gone:x:1", model=api.model, owner=key))
        error = assert_error(chat(api, headers, QUESTION), 500)
        assert error["code"] == "guard_unavailable" and "tunesmith guard" in error["message"]
