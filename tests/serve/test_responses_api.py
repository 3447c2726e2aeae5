"""OpenAI's Responses API on the tiny model, through the official client: each answer is the chat route's answer to
the same conversation, streamed as typed events or not, continued with previous_response_id, with function tools and
JSON schemas; stored responses retrieved, listed and deleted; unsupported parameters refused by name."""
import json

import openai
import pytest
from fastapi.testclient import TestClient

from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

GREEDY = {"temperature": 0}
SCHEMA = {"type": "object", "properties": {"metal": {"type": "boolean"}}, "required": ["metal"],
          "additionalProperties": False}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


@pytest.fixture
def served(served_openai):
    return served_openai


def chat_text(client, model, messages, tokens, **extra):
    answer = client.chat.completions.create(model=model, messages=messages, max_completion_tokens=tokens, **GREEDY,
                                            **extra)
    return answer.choices[0], answer.usage


def test_an_answer_is_the_chat_routes_answer_to_the_same_conversation(served):
    client, model = served
    response = client.responses.create(model=model, input="Name a metal.", instructions="Be brief.",
                                       max_output_tokens=7, **GREEDY)
    choice, usage = chat_text(client, model, [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Name a metal."}], 7)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.output_text == choice.message.content
    assert response.status == ("incomplete" if choice.finish_reason == "length" else "completed")
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.content[0].type == "output_text"
    assert response.instructions == "Be brief." and response.max_output_tokens == 7


def test_a_streamed_answer_is_the_same_answer_in_typed_events(served):
    client, model = served
    whole = client.responses.create(model=model, input="Say hello.", max_output_tokens=6, **GREEDY)
    events = list(client.responses.create(model=model, input="Say hello.", max_output_tokens=6, stream=True, **GREEDY))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] in ("response.completed",
                                                                                       "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.output_text == whole.output_text and events[-1].response.status == whole.status
    (added,) = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert client.responses.retrieve(events[-1].response.id).output[0].id == added  # stored as it was streamed
    # the client's own accumulator (it needs response.completed: an answer the schema ends, not one cut at its limit)
    shaped = {"text": {"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}},
              "model": model, "input": "Is iron a metal?", "max_output_tokens": 20, **GREEDY}
    with client.responses.stream(**shaped) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == client.responses.create(**shaped).output_text


def test_previous_response_id_continues_the_stored_conversation(served):
    client, model = served
    first = client.responses.create(model=model, input="Name a gas.", max_output_tokens=5, **GREEDY)
    second = client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "And a metal?"}]}], previous_response_id=first.id, max_output_tokens=5, **GREEDY)
    choice, _ = chat_text(client, model, [{"role": "user", "content": "Name a gas."},
                                          {"role": "assistant", "content": first.output_text},
                                          {"role": "user", "content": "And a metal?"}], 5)
    assert second.output_text == choice.message.content and second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).output_text == second.output_text
    (item,) = client.responses.input_items.list(second.id).data
    assert item.type == "message" and item.content[0].text == "And a metal?"
    db = client._client.app.state.db
    stored = lambda response_id: json.loads(db.query_one("SELECT conversation FROM responses WHERE id = ?",
                                                         (response_id,))["conversation"])
    assert len(stored(second.id)) == 2  # its own exchange, linked to the first: a chain stores no conversation twice
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    assert len(stored(second.id)) == 4  # it took the deleted first's messages into its own
    third = client.responses.create(model=model, input="More?", previous_response_id=second.id, max_output_tokens=3,
                                    store=False, **GREEDY)
    choice, _ = chat_text(client, model, [{"role": "user", "content": "Name a gas."},
                                          {"role": "assistant", "content": first.output_text},
                                          {"role": "user", "content": "And a metal?"},
                                          {"role": "assistant", "content": second.output_text},
                                          {"role": "user", "content": "More?"}], 3)
    assert third.output_text == choice.message.content  # the whole conversation, read back along the links
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(third.id)  # store=False: not kept
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=model, input="x", previous_response_id=first.id)
    assert missing.value.body["param"] == "previous_response_id"


@pytest.fixture
def tools_served(tmp_path):
    """The tiny pair with room for a tools section (its 400-token vocabulary spells most of it byte by byte)."""
    from tests.tiny import tiny_model, tiny_tokenizer

    directory = tmp_path / "tiny-tools"
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    model.config.max_position_embeddings = 2048
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(directory)], run_jobs=False))
    with TestClient(app) as http:
        secret = keys.create_key(app.state.db)[1]
        yield openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=http, max_retries=0), \
            directory.name


def test_function_tools_round_trip_as_items(tools_served):
    client, model = tools_served
    called = client.responses.create(model=model, input="Weather in Oslo?", tools=[WEATHER], tool_choice="required",
                                     parallel_tool_calls=False, max_output_tokens=300, **GREEDY)
    calls = [item for item in called.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and set(json.loads(calls[0].arguments)) == {"city"}
    chat_choice, _ = chat_text(client, model, [{"role": "user", "content": "Weather in Oslo?"}], 300,
                               tools=[{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}],
                               tool_choice="required", parallel_tool_calls=False)
    assert [c.function.arguments for c in chat_choice.message.tool_calls] == [c.arguments for c in calls]
    answered = client.responses.create(model=model, previous_response_id=called.id,
                                       max_output_tokens=6, **GREEDY, input=[
                                           {"type": "function_call_output", "call_id": calls[0].call_id,
                                            "output": "Sunny, 21 C"}])
    chat_choice, _ = chat_text(client, model, [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": c.call_id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].call_id, "content": "Sunny, 21 C"}], 6)
    assert answered.output_text == (chat_choice.message.content or "")
    events = list(client.responses.create(model=model, input="Weather in Oslo?", tools=[WEATHER], stream=True,
                                          tool_choice="required", parallel_tool_calls=False, max_output_tokens=300,
                                          **GREEDY))
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == calls[0].arguments


def test_a_json_schema_holds_the_answer(served):
    client, model = served
    response = client.responses.create(model=model, input="Is iron a metal?", max_output_tokens=20, **GREEDY,
                                       text={"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA,
                                                        "strict": True}})
    assert json.loads(response.output_text) in ({"metal": True}, {"metal": False})


@pytest.mark.parametrize("extra, param", [
    ({"background": True}, "background"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
    ({"truncation": "auto"}, "truncation"),
    ({"tools": [{"type": "function", "name": "bad name!", "parameters": {}}]}, "tools[0].name"),
    ({"personality": "cheerful"}, "personality"),  # a field this server does not know: refused, not ignored
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]}, "input[0].content[0]"),
])
def test_unsupported_parameters_are_refused_by_name(served, extra, param):
    client, model = served
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(**{"model": model, "input": "hi", **{k: v for k, v in extra.items() if k != "personality"}},
                                extra_body={k: v for k, v in extra.items() if k == "personality"})
    assert refused.value.body["param"] == param


def test_another_keys_responses_are_not_found(served):
    client, model = served
    response = client.responses.create(model=model, input="hi", max_output_tokens=2)
    http = client._client
    other = openai.OpenAI(base_url="http://testserver/v1", api_key=keys.create_key(http.app.state.db)[1],
                          http_client=http, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=model, input="x", previous_response_id=response.id)


def test_retention_expires_stored_responses(served, tmp_path):
    import time

    from tunesmith.registry import audit
    from tunesmith.serve.retention import expire

    client, model = served
    response = client.responses.create(model=model, input="hi", max_output_tokens=2)
    state = client._client.app.state
    settings = state.settings.model_copy(update={"retention_days": 1})
    assert expire(state.db, settings, time.time()) == []
    assert expire(state.db, settings, time.time() + 2 * 86400) == [response.id]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    assert [(e["actor"], e["action"]) for e in audit.entries(state.db) if e["object_id"] == response.id] == [
        ("retention", "response.expired")]


def test_an_inference_key_answers_and_deletes_its_responses_a_read_only_key_cannot(served):
    client, model = served
    http = client._client
    db = http.app.state.db
    inference = openai.OpenAI(base_url="http://testserver/v1", http_client=http, max_retries=0,
                              api_key=keys.create_key(db, scope="inference-only")[1])
    response = inference.responses.create(model=model, input="hi", max_output_tokens=2)
    inference.responses.delete(response.id)
    reader = openai.OpenAI(base_url="http://testserver/v1", http_client=http, max_retries=0,
                           api_key=keys.create_key(db, scope="read-only")[1])
    with pytest.raises(openai.PermissionDeniedError):
        reader.responses.create(model=model, input="hi", max_output_tokens=2)


def test_logprobs_are_included_as_chat_gives_them_streamed_or_not(served):
    client, model = served
    asked = {"model": model, "input": "Name a metal.", "max_output_tokens": 5, "temperature": 0,
             "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    response = client.responses.create(**asked)
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a metal."}],
                                          max_completion_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
    part = response.output[0].content[0]
    expected = chat.choices[0].logprobs.content

    def same_logprobs(got) -> bool:
        """The same tokens, log-probabilities equal to float rounding: the second request reuses the first's prefilled
        prompt and prefills fewer rows, and in float32 the packed product serves only some row counts
        (FLOAT32_PACKED_ROWS, models/packed_linear.py), so its sums may run through another kernel."""
        return [p.token for p in got] == [e.token for e in expected] and \
            all(abs(p.logprob - e.logprob) < 1e-5 for p, e in zip(got, expected))

    assert expected and same_logprobs(part.logprobs)
    assert [[t.token for t in p.top_logprobs] for p in part.logprobs] == [[t.token for t in e.top_logprobs] for e in expected]
    events = list(client.responses.create(**asked, stream=True))
    assert same_logprobs([p for e in events if e.type == "response.output_text.delta" for p in e.logprobs])
    assert client.responses.create(model=model, input="x", max_output_tokens=2).output[0].content[0].logprobs == []
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=model, input="x", include=["file_search_call.results"])
    assert refused.value.body["param"] == "include"


def test_input_tokens_are_counted_as_the_answer_reads_them(served):
    client, model = served
    asked = {"model": model, "input": "Name a metal.", "instructions": "Be brief."}
    counted = client.responses.input_tokens.count(**asked)
    assert counted.input_tokens == client.responses.create(**asked, max_output_tokens=2).usage.input_tokens
