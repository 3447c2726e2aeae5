"""The Responses and Evals APIs on the embedded SmolLM2-135M-Instruct (its real chat template and tokenizer): a
response is the chat answer, a function call comes back as an item with arguments for the tool, and an eval run
graded by the model itself as a label_model judge finishes with every row judged."""
import json
import time

import openai
import pytest
from fastapi.testclient import TestClient

from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

MODEL = "smollm2-135m-instruct"
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


@pytest.mark.slow
def test_responses_and_evals_on_the_embedded_model(tmp_path):
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[MODEL], run_jobs=False))
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key=keys.create_key(app.state.db)[1],
                               http_client=http, max_retries=0)
        response = client.responses.create(model=MODEL, input="What is the chemical symbol for gold?",
                                           instructions="Answer in one short sentence.", max_output_tokens=24,
                                           temperature=0)
        chat = client.chat.completions.create(model=MODEL, temperature=0, max_completion_tokens=24, messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the chemical symbol for gold?"}])
        assert response.output_text == chat.choices[0].message.content and response.output_text.strip()

        called = client.responses.create(model=MODEL, input="What's the weather in Oslo?", tools=[WEATHER],
                                         tool_choice="required", parallel_tool_calls=False, max_output_tokens=48,
                                         temperature=0)
        (call,) = [item for item in called.output if item.type == "function_call"]
        assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)

        judge = {"type": "label_model", "name": "names_a_symbol", "model": MODEL, "labels": ["yes", "no"],
                 "passing_labels": ["yes"], "input": [
                     {"role": "system", "content": "Does the answer name a chemical symbol? Answer yes or no."},
                     {"role": "user", "content": "{{ sample.output_text }}"}]}
        exact = {"type": "string_check", "name": "symbol", "operation": "like", "input": "{{ sample.output_text }}",
                 "reference": "{{ item.symbol }}"}
        created = client.evals.create(name="symbols", testing_criteria=[exact, judge], data_source_config={
            "type": "custom", "item_schema": {"type": "object", "properties": {
                "element": {"type": "string"}, "symbol": {"type": "string"}}, "required": ["element", "symbol"]}})
        rows = [("gold", "Au"), ("iron", "Fe"), ("oxygen", "O"), ("sodium", "Na")]
        run = client.evals.runs.create(created.id, data_source={
            "type": "completions", "model": MODEL, "sampling_params": {"temperature": 0, "max_completion_tokens": 16},
            "input_messages": {"type": "template", "template": [
                {"role": "user", "content": "What is the chemical symbol for {{ item.element }}?"}]},
            "source": {"type": "file_content", "content": [{"item": {"element": e, "symbol": s}} for e, s in rows]}})
        deadline = time.monotonic() + 120
        while (run := client.evals.runs.retrieve(run.id, eval_id=created.id)).status not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert run.status == "completed" and run.result_counts.total == 4 and run.result_counts.errored == 0
        judged = {r.testing_criteria: r.passed + r.failed for r in run.per_testing_criteria_results}
        assert judged == {"symbol": 4, "names_a_symbol": 4}
        (usage,) = run.per_model_usage
        assert usage.invocation_count == 8  # four answers, four judgements
