"""Structured outputs (response_format json_object / json_schema): the engine holds answers to the schema's grammar,
leaves batch-mates alone, and the API takes OpenAI's shapes, the official client's `parse` included."""
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.decoding.constraints import SchemaError, json_grammar
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.requests import GenerationRequest, SamplingParams, Usage


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    element: Literal["gold", "silver", "lead"]
    metal: bool
    group: int = Field(ge=1, le=18)


@pytest.fixture
def prompt(tokenizer):
    return render_prompts(tokenizer, [[{"role": "user", "content": "What is the symbol for gold?"}]])[0]


def answers(model, tokenizer, prompt, *params) -> list[tuple[str, str]]:
    """(text, finish reason) of each request's first choice, all admitted into one running batch."""
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [GenerationRequest(prompt, p, None, Usage()) for p in params]
    batch.admit(model, requests)
    while len(batch):
        batch.step(model)
    found = []
    for request in requests:
        deltas = list(iter(request.out.get_nowait, None))
        found.append(("".join(d.text for d in deltas if d.index == 0),
                      next(d.finish_reason for d in deltas if d.index == 0 and d.finish_reason)))
    return found


def verdict_grammar(model, tokenizer):
    return json_grammar(Verdict.model_json_schema(), tokenizer, model.config.vocab_size)


def test_a_greedy_answer_is_valid_under_the_schema_and_ends_at_its_end(model, tokenizer, prompt):
    (free, _), = answers(model, tokenizer, prompt, SamplingParams(max_new_tokens=40, temperature=0))
    with pytest.raises(ValidationError):
        Verdict.model_validate_json(free)  # the random tiny model writes no JSON of its own
    (text, finish), = answers(model, tokenizer, prompt,
                              SamplingParams(max_new_tokens=40, temperature=0, grammar=verdict_grammar(model, tokenizer)))
    assert finish == "stop"  # the grammar left only the end-of-turn token once the object closed
    Verdict.model_validate_json(text)
    assert text.startswith('{"') and " " not in text  # compact: no whitespace between the syntax's tokens


def test_sampled_choices_each_follow_the_schema_and_a_seed_repeats_them(model, tokenizer, prompt):
    def choices():
        params = SamplingParams(max_new_tokens=40, temperature=1.5, n=4, seed=11,
                                grammar=verdict_grammar(model, tokenizer))
        request = GenerationRequest(prompt, params, None, Usage())
        batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
        batch.admit(model, [request])
        while len(batch):
            batch.step(model)
        deltas = list(iter(request.out.get_nowait, None))
        return ["".join(d.text for d in deltas if d.index == i) for i in range(4)]

    texts = choices()
    for text in texts:
        Verdict.model_validate_json(text)
    assert len(set(texts)) > 1  # four rows, each with its own copy of the grammar's state
    assert choices() == texts


def test_a_constrained_request_leaves_the_others_in_its_batch_alone(model, tokenizer, prompt):
    plain = SamplingParams(max_new_tokens=8, temperature=0)
    held = SamplingParams(max_new_tokens=40, temperature=0, grammar=verdict_grammar(model, tokenizer))
    biased = SamplingParams(max_new_tokens=8, temperature=0, logit_bias={11: 5.0})
    together = answers(model, tokenizer, prompt, plain, held, biased, held)
    alone = [answers(model, tokenizer, prompt, p)[0] for p in (plain, held, biased)]
    assert together == [alone[0], alone[1], alone[2], alone[1]]


def test_max_tokens_cuts_a_constrained_answer_with_length(model, tokenizer, prompt):
    (text, finish), = answers(model, tokenizer, prompt,
                              SamplingParams(max_new_tokens=3, temperature=0, grammar=verdict_grammar(model, tokenizer)))
    assert finish == "length" and text.startswith("{")


def test_penalties_and_a_grammar_share_one_copy_and_leave_the_models_logits_alone(model, tokenizer):
    """choose_for_rows' penalties make a float32 copy and the grammar masks that copy in place (one copy, not two);
    the model's own logits, which log-probabilities read, are never written."""
    from collections import Counter

    from tunesmith.models.decoding.constraints import constrained
    from tunesmith.models.decoding.penalties import penalized

    grammar = verdict_grammar(model, tokenizer)
    logits = torch.randn(2, model.config.vocab_size).to(torch.bfloat16)
    before = logits.clone()
    params = SamplingParams(max_new_tokens=4, temperature=0, frequency_penalty=1.0)
    adjusted = penalized(logits, [(0, params, Counter({5: 2}))])
    masked = constrained(adjusted, [(0, grammar.start())], owned=adjusted is not logits)
    assert masked is adjusted and masked.dtype == torch.float32  # masked in place: no second copy
    assert torch.isinf(masked[0]).sum() > 0 and not torch.isinf(masked[1]).any()
    assert torch.equal(logits, before)
    alone = constrained(logits, [(1, grammar.start())])  # without penalties: a copy of its own
    assert alone is not logits and torch.equal(logits, before) and torch.isinf(alone[1]).sum() > 0


def test_a_schema_the_compiler_cannot_follow_says_why(model, tokenizer):
    with pytest.raises(SchemaError, match="strang"):
        json_grammar({"type": "object", "properties": {"x": {"type": "strang"}}}, tokenizer, model.config.vocab_size)


def client_for(api):
    import openai

    key = api.headers["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api, max_retries=0)


def test_the_official_clients_parse_gets_an_instance_of_its_model(api, tiny_model_dir):
    client = client_for(api)
    messages = [{"role": "user", "content": "Which element is this?"}]
    completion = client.chat.completions.parse(model=tiny_model_dir.name, messages=messages,
                                               response_format=Verdict, max_tokens=40, temperature=0)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Verdict) and completion.choices[0].finish_reason == "stop"
    assert Verdict.model_validate_json(message.content) == message.parsed
    streamed = client.chat.completions.create(model=tiny_model_dir.name, messages=messages, max_tokens=40,
                                              temperature=0, stream=True, response_format={
                                                  "type": "json_schema", "json_schema": {
                                                      "name": "Verdict", "schema": Verdict.model_json_schema()}})
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == message.content


def test_json_mode_wants_the_word_json_and_answers_an_object(api, tiny_model_dir):
    import json

    import openai

    client = client_for(api)
    asked = dict(model=tiny_model_dir.name, max_tokens=60, temperature=0, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'") as raised:
        client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **asked)
    assert raised.value.param == "messages"
    choice = client.chat.completions.create(messages=[{"role": "user", "content": "Answer in JSON."}], **asked).choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:  # the random model may still be inside a string at max_tokens: what it wrote so far begins an object
        assert choice.finish_reason == "length" and choice.message.content.startswith("{")


@pytest.mark.parametrize("response_format, param, says", [
    ({"type": "json_schema"}, "response_format.json_schema", "Missing required parameter"),
    ({"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}}, "response_format.json_schema.name",
     "pattern"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strang"}}}, "response_format", "strang"),
    ({"type": "yaml"}, "response_format.type", "text"),
])
def test_bad_response_formats_are_400s_naming_the_field(api, tiny_model_dir, response_format, param, says):
    import openai

    with pytest.raises(openai.BadRequestError, match=says) as raised:
        client_for(api).chat.completions.create(model=tiny_model_dir.name, messages=[{"role": "user", "content": "json"}],
                                                max_tokens=4, response_format=response_format)
    assert raised.value.param == param
