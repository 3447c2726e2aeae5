"""/v1/fine_tuning/alpha/graders/validate and /run through the official openai client, in-process."""
import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.graders import MultiGrader, StringCheckGrader

from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

EXACT = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}"}
CODE = {"type": "python", "name": "code",
        "source": "def grade(sample, item):\n    return 1 / len(sample['output_text'])\n"}


def client_for(tmp_path, tiny_model_dir, **settings):
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False, **settings))
    http = TestClient(app)
    http.__enter__()
    key = keys.create_key(app.state.db)[1]
    return http, openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
def client(tmp_path, tiny_model_dir):
    http, client = client_for(tmp_path, tiny_model_dir)
    yield client.fine_tuning.alpha.graders
    http.__exit__(None, None, None)


@pytest.fixture
def python_client(tmp_path, tiny_model_dir):
    http, client = client_for(tmp_path, tiny_model_dir, allow_python_graders=True)
    yield client.fine_tuning.alpha.graders
    http.__exit__(None, None, None)


def test_validate_answers_the_normalized_grader_and_400s_name_the_field(client):
    multi = {"type": "multi", "name": "m", "graders": EXACT, "calculate_output": "2 * exact"}
    answer = client.validate(grader=multi)
    assert isinstance(answer.grader, MultiGrader) and answer.grader.calculate_output == "2 * exact"
    assert answer.grader.graders == StringCheckGrader(**EXACT)  # one grader object, as given
    mapped = client.validate(grader={**multi, "graders": {"hit": EXACT}, "calculate_output": "hit"}).grader
    assert mapped.graders == {"hit": EXACT}  # a map, as OpenAI's guide writes it (the client keeps it as a dict)
    assert client.validate(grader=CODE).grader.source == CODE["source"]  # compiled, not run: allowed here
    with pytest.raises(openai.BadRequestError) as refused:
        client.validate(grader={**EXACT, "operation": "contains"})
    error = refused.value.body
    assert error["param"] == "grader.operation" and '"contains" is not one of eq, ne, like, ilike' in error["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.validate(grader={**multi, "calculate_output": "exact.__class__"})
    assert refused.value.body["param"] == "grader.calculate_output"
    with pytest.raises(openai.NotFoundError) as refused:  # a judge must be one of the key's models
        client.validate(grader={"type": "score_model", "name": "s", "model": "gpt-4o",
                                "input": [{"role": "user", "content": "{{ sample.output_text }}"}]})
    assert refused.value.body["param"] == "grader.model"


def test_run_asks_a_model_graders_judge(tmp_path, tiny_model_dir):
    http, client = client_for(tmp_path, tiny_model_dir)
    label = {"type": "label_model", "name": "tone", "model": tiny_model_dir.name, "labels": ["kind", "rude"],
             "passing_labels": ["kind"], "input": [{"role": "user", "content": "Label: {{ sample.output_text }}"}]}
    answer = client.fine_tuning.alpha.graders.run(grader=label, model_sample="thanks!", item={})
    chosen = 1.0 if answer.reward == 1.0 else 0.0
    assert answer.reward == chosen and answer.metadata.sampled_model_name == tiny_model_dir.name
    usage = answer.model_grader_token_usage_per_model[tiny_model_dir.name]
    assert usage["completion_tokens"] > 0 and answer.metadata.token_usage == usage["total_tokens"]
    direct = client.chat.completions.create(model=tiny_model_dir.name, temperature=0, max_completion_tokens=128,
                                            messages=[{"role": "user", "content": "Label: thanks!"}],
                                            response_format={"type": "json_schema", "json_schema": {
                                                "name": "grade", "strict": True, "schema": {
                                                    "type": "object", "additionalProperties": False,
                                                    "properties": {"label": {"type": "string", "enum": ["kind", "rude"]}},
                                                    "required": ["label"]}}})
    assert answer.reward == (1.0 if '"kind"' in direct.choices[0].message.content else 0.0)  # the judge's own answer
    http.__exit__(None, None, None)


def test_run_answers_openais_shape(client):
    right = client.run(grader=EXACT, model_sample="Paris", item={"answer": "Paris"})
    assert right.reward == 1.0 and right.sub_rewards == {} and right.api_model_grader_token_usage_per_model == {}
    assert right.metadata.name == "exact" and right.metadata.type == "string_check"
    assert right.metadata.execution_time >= 0 and right.metadata.token_usage is None
    errors = right.metadata.errors
    assert not any([errors.formula_parse_error, errors.invalid_variable_error, errors.other_error,
                    errors.python_grader_runtime_error, errors.python_grader_server_error, errors.sample_parse_error,
                    errors.api_model_grader_parse_error, errors.unresponsive_reward_error])
    multi = {"type": "multi", "name": "m", "calculate_output": "0.5 * exact + 0.5 * close",
             "graders": {"exact": EXACT, "close": {**EXACT, "type": "text_similarity", "name": "close",
                                                   "evaluation_metric": "rouge_1", "operation": None}}}
    del multi["graders"]["close"]["operation"]
    half = client.run(grader=multi, model_sample="Paris France", item={"answer": "Paris"})
    assert half.sub_rewards == {"exact": 0.0, "close": pytest.approx(2 / 3)} and half.reward == pytest.approx(1 / 3)
    missing = client.run(grader=EXACT, model_sample="Paris", item={"city": "Paris"})
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error


def test_python_graders_run_only_where_the_operator_allows(client, python_client):
    with pytest.raises(openai.BadRequestError, match="--allow-python-graders"):
        client.run(grader=CODE, model_sample="abcd")
    assert python_client.run(grader=CODE, model_sample="abcd").reward == 0.25
    failed = python_client.run(grader=CODE, model_sample="")
    errors = failed.metadata.errors
    assert failed.reward == 0.0 and errors.python_grader_runtime_error
    assert errors.python_grader_runtime_error_details.startswith("ZeroDivisionError")
