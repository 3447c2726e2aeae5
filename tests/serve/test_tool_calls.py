"""Function calling: the text format training and serving share, the streamed splitter, and the API through the
official client (tool_choice required / named / auto / none, parallel calls, tool results in the conversation)."""
import json
from pathlib import Path

import pytest

from tunesmith.models.chat import render_prompts
from tests.tiny import tiny_model, tiny_tokenizer
from tunesmith.models.tool_calls import AnswerSplitter, ToolCall, as_plain_messages, parse_answer, tool_spec

REPO = Path(__file__).resolve().parents[2]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Paris", "Lima"]},
                                                    "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {"name": "now"}}
CONVERSATION = [
    {"role": "user", "content": "Weather in Oslo and Lima?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "C"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lima", "unit": "C"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "3 C, snow"},
    {"role": "tool", "tool_call_id": "call_2", "content": "19 C, sun"},
    {"role": "assistant", "content": "Oslo: 3 C and snow; Lima: 19 C and sun."},
]


def test_a_conversation_with_calls_becomes_plain_turns_and_its_calls_parse_back():
    plain = as_plain_messages(CONVERSATION, [tool_spec(WEATHER["function"]), tool_spec(CLOCK["function"])])
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user", "assistant"]
    assert '"name": "get_weather"' in plain[0]["content"] and '"name": "now"' in plain[0]["content"]
    assert '"parameters": {"type": "object", "properties": {}' in plain[0]["content"]  # no parameters: none at all
    assert plain[3]["content"] == "<tool_response>\n3 C, snow\n</tool_response>\n<tool_response>\n19 C, sun\n</tool_response>"
    content, calls = parse_answer(plain[2]["content"])
    assert content is None and calls == [ToolCall("get_weather", '{"city": "Oslo", "unit": "C"}'),
                                         ToolCall("get_weather", '{"city": "Lima", "unit": "C"}')]
    with_system = as_plain_messages([{"role": "system", "content": "Be brief."}] + CONVERSATION[:1], [WEATHER])
    assert with_system[0]["content"].startswith("Be brief.\n\n# Tools") and len(with_system) == 2


@pytest.mark.parametrize("text", [
    'Checking.\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
    '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "now", "arguments": {"a": 1}}\n</tool_call>',
    'No calls here, only <tool text.',
    '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call> and then prose',  # not only calls: text
    '<tool_call>\n{"name": "now", "argum',  # cut by max_tokens: text
])
def test_the_stream_splitter_agrees_with_the_whole_answer_at_every_chunking(text):
    content, calls = parse_answer(text)
    for size in (1, 2, 3, 7, len(text)):
        splitter = AnswerSplitter()
        sent = "".join(splitter.feed(text[i:i + size]) for i in range(0, len(text), size))
        rest, streamed_calls = splitter.finish()
        assert streamed_calls == calls
        assert (sent + rest).strip() == (content or "").strip() if calls else sent + rest == text


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """The tiny pair with room for a tools section (its 400-token vocabulary spells most of it byte by byte)."""
    directory = tmp_path_factory.mktemp("tiny-tools-base")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    model.config.max_position_embeddings = 2048
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def client_for(api):
    import openai

    key = api.headers["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api, max_retries=0)


def asked(model, **more):
    return dict(model=model, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER, CLOCK],
                temperature=0, **{"max_tokens": 300, **more})


def test_the_calls_grammar_takes_one_call_or_several_only_when_parallel(tokenizer, model):
    from tunesmith.models.decoding.constraints import lark_grammar
    from tunesmith.models.tool_calls import calls_grammar_text

    tools = [tool_spec(WEATHER["function"]), tool_spec(CLOCK["function"])]
    one = as_plain_messages(CONVERSATION[:2], tools)[2]["content"].split("\n<tool_call>")[0]
    two = as_plain_messages(CONVERSATION[:2], tools)[2]["content"]
    wrong_city = one.replace("Oslo", "Rome")
    for parallel, text, whole in [(True, one, True), (True, two, True), (False, one, True), (False, two, False),
                                  (True, wrong_city, False)]:
        matcher = lark_grammar(calls_grammar_text(tools, parallel), tokenizer, model.config.vocab_size).start()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        taken = matcher.validate_tokens(ids)
        assert (taken == len(ids) and matcher.consume_tokens(ids) and matcher.is_accepting()) == whole, (parallel, text)


def test_with_a_response_format_on_auto_the_answer_is_that_json_or_calls(tokenizer, model, api, tiny_model_dir):
    from tunesmith.models.decoding.constraints import lark_grammar
    from tunesmith.models.tool_calls import calls_grammar_text

    schema = {"type": "object", "properties": {"temp": {"type": "integer"}}, "required": ["temp"],
              "additionalProperties": False}
    text = calls_grammar_text([tool_spec(WEATHER["function"])], True, schema)
    for answer, whole in [('{"temp":3}', True), (call_block_of("Oslo"), True), ("It is cold.", False),
                          ('{"temp":"cold"}', False)]:
        matcher = lark_grammar(text, tokenizer, model.config.vocab_size).start()
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert (matcher.validate_tokens(ids) == len(ids) and matcher.consume_tokens(ids)
                and matcher.is_accepting()) == whole, answer
    reading = {"type": "json_schema", "json_schema": {"name": "reading", "schema": schema}}
    choice = client_for(api).chat.completions.create(**asked(tiny_model_dir.name, parallel_tool_calls=False,
                                                             response_format=reading)).choices[0]
    assert choice.finish_reason in ("stop", "tool_calls"), choice
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
    else:
        assert isinstance(json.loads(choice.message.content)["temp"], int)


def call_block_of(city: str) -> str:
    from tunesmith.models.tool_calls import call_block

    return call_block("get_weather", {"city": city, "unit": "C"})


def test_required_calls_offered_tools_with_valid_arguments_streamed_or_not(api, tiny_model_dir):
    client = client_for(api)
    choice = client.chat.completions.create(**asked(tiny_model_dir.name, tool_choice="required",
                                                    parallel_tool_calls=False)).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        arguments = json.loads(call.function.arguments)
        assert call.function.name in ("get_weather", "now")
        if call.function.name == "get_weather":
            assert arguments["city"] in ("Oslo", "Paris", "Lima") and arguments["unit"] in ("C", "F")
        else:
            assert arguments == {}
    stream = client.chat.completions.create(**asked(tiny_model_dir.name, tool_choice="required",
                                                    parallel_tool_calls=False, stream=True))
    chunks = [chunk.choices[0] for chunk in stream if chunk.choices]
    streamed = [call for c in chunks for call in (c.delta.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in streamed] == \
        [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    assert [c.index for c in streamed] == list(range(len(streamed))) and chunks[-1].finish_reason == "tool_calls"
    assert not "".join(c.delta.content or "" for c in chunks)  # the calls' text never streams as content


def test_a_named_function_is_the_one_called_once(api, tiny_model_dir):
    choice = client_for(api).chat.completions.create(**asked(
        tiny_model_dir.name, tool_choice={"type": "function", "function": {"name": "get_weather"}})).choices[0]
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city", "unit"}


def test_auto_and_none_leave_a_textual_answer_as_content_and_the_prompt_holds_the_tools(api, tiny_model_dir, tokenizer):
    client = client_for(api)
    for choice in ("auto", "none", None):
        more = {} if choice is None else {"tool_choice": choice}
        completion = client.chat.completions.create(**asked(tiny_model_dir.name, max_tokens=6, **more))
        message = completion.choices[0].message
        assert message.tool_calls is None and message.content  # the random tiny model writes no call
        expected = render_prompts(tokenizer, [as_plain_messages([{"role": "user", "content": "Weather in Oslo?"}],
                                                                [WEATHER, tool_spec(CLOCK["function"])])])[0]
        assert completion.usage.prompt_tokens == len(expected)


def test_tool_results_in_the_conversation_reach_the_model_as_training_renders_them(api, tiny_model_dir, tokenizer):
    completion = client_for(api).chat.completions.create(model=tiny_model_dir.name, messages=CONVERSATION[:4],
                                                         tools=[WEATHER], max_tokens=4)
    expected = render_prompts(tokenizer, [as_plain_messages(CONVERSATION[:4], [WEATHER])])[0]
    assert completion.usage.prompt_tokens == len(expected)


@pytest.mark.parametrize("more, param, says", [
    ({"tools": None, "tool_choice": "required"}, "tool_choice", "only allowed when 'tools'"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "no function named 'nope'"),
    ({"tools": [WEATHER, WEATHER]}, "tools", "unique"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name", "pattern"),
])
def test_bad_tool_requests_are_400s_naming_the_field(api, tiny_model_dir, more, param, says):
    import openai

    body = {**asked(tiny_model_dir.name), **more}
    body["messages"] = [{"role": "user", "content": "json weather"}]
    if body["tools"] is None:
        del body["tools"]
    with pytest.raises(openai.BadRequestError, match=says) as raised:
        client_for(api).chat.completions.create(**body)
    assert raised.value.param == param


def test_a_function_calling_training_file_is_accepted_and_a_bad_call_refused_by_line(api):
    rows = [json.loads(line) for line in (REPO / "examples/tools/train.jsonl").read_text().splitlines()[:5]]

    def checked(rows) -> dict:
        stored = client_for(api).files.create(file=("train.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                                              purpose="fine-tune")
        return api.get(f"/ui/api/files/{stored.id}/check").json()  # waits for the full check, as the web UI does

    assert checked(rows)["status"] == "processed"
    rows[2]["messages"][1]["tool_calls"][0]["function"]["name"] = "lookup_elements"
    refused = checked(rows)
    assert refused["status"] == "error" and "line 3" in refused["status_details"]
    assert "lookup_elements" in refused["status_details"]
