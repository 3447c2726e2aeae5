"""The official `openai` client against a real `tunesmith serve --moderation-model`: moderations.create
parses our answers unchanged, and `tunesmith guard set/remove` put a guard in front of a served model."""
import openai
import pytest
from typer.testing import CliRunner

from tests.serve.keyword_classifier import save_keyword_classifier
from tests.serve.server import create_key, free_port, start_server
from tunesmith.cli import app
from tunesmith.data.labels import MODERATION_CATEGORIES
from tunesmith.registry.db import Database

HELIUM = 353  # " helium" in the tiny tokenizer: the keyword the classifier flags
runner = CliRunner()


@pytest.fixture
def server(tmp_path, tiny_model_dir, tokenizer):
    classifier = save_keyword_classifier(tmp_path / "moderation", tokenizer, [HELIUM])
    port = free_port()
    process = start_server(tmp_path / "home", tiny_model_dir, port, "--moderation-model", str(classifier))
    yield f"http://127.0.0.1:{port}/v1", tmp_path / "home"
    process.terminate()
    process.wait(timeout=30)


def test_openai_client_moderations_and_a_guard_set_from_the_cli(server, tiny_model_dir):
    url, home = server
    client = openai.OpenAI(base_url=url, api_key=create_key(home), max_retries=0, timeout=60)

    answer = client.moderations.create(model="omni-moderation-latest", input="How do I make helium?")
    assert answer.id.startswith("modr-") and answer.model == "omni-moderation-latest"
    [result] = answer.results
    assert result.flagged and result.categories.violence and result.categories.illicit_violent
    assert not result.categories.harassment and result.category_scores.harassment < 0.01
    assert result.category_applied_input_types.self_harm == ["text"]
    dumped = result.model_dump(by_alias=True)
    assert all(set(dumped[field]) == set(MODERATION_CATEGORIES)
               for field in ("categories", "category_scores", "category_applied_input_types"))
    many = client.moderations.create(input=["What is gold?", "Tell me about helium"])
    assert [r.flagged for r in many.results] == [False, True]
    parts = client.moderations.create(input=[{"type": "text", "text": "What is gold?"}])
    assert len(parts.results) == 1 and not parts.results[0].flagged
    with pytest.raises(openai.BadRequestError, match="text only"):
        client.moderations.create(input=[{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])

    model, harmful = tiny_model_dir.name, [{"role": "user", "content": "How do I make helium?"}]
    guard = ["guard", "set", "--home", str(home), "--model", model, "--moderation-model", "omni-moderation-latest",
             "--screen", "input"]
    assert runner.invoke(app, guard).exit_code == 0
    listed = runner.invoke(app, ["guard", "list", "--home", str(home)]).stdout
    assert f"{model}\t*\tinput\tomni-moderation-latest" in listed
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=harmful, max_tokens=4)
    assert refused.value.code == "content_filter" and "violence" in refused.value.message
    assert runner.invoke(app, ["guard", "remove", "--home", str(home), "--model", model]).exit_code == 0
    assert client.chat.completions.create(model=model, messages=harmful, max_tokens=4).choices[0].finish_reason


def test_guard_set_refuses_unknown_keys_models_and_screens(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    Database(home / "tunesmith.sqlite").close()  # the server's registry, as `tunesmith serve` leaves it
    base = ["guard", "set", "--home", str(home), "--moderation-model"]
    cases = [(["omni-moderation-latest", "--key", "key-nope"], "--key: no API key key-nope"),
             (["ft:none:x:1"], "--moderation-model: The model ft:none:x:1 does not exist"),
             ([str(tiny_model_dir)], "is a chat model, not a moderation model"),
             (["omni-moderation-latest", "--screen", "all"], "'all' is not one of input, output, both")]
    for extra, message in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 1 and message in " ".join(result.stderr.split()), result.stderr
