"""The official `openai` client against a real `tunesmith serve --moderation-model`: moderations.create
parses our answers unchanged, `tunesmith guard set/remove` put a guard in front of a served model, and a
fine-tuning job on a classification file makes an ft: moderation model."""
import json

import openai
import pytest
from typer.testing import CliRunner

from tests.serve.keyword_classifier import save_keyword_classifier
from tests.serve.server import create_key, free_port, start_server, wait_for
from tunesmith.cli import app
from tunesmith.data.labels import MODERATION_CATEGORIES
from tunesmith.registry.db import Database

HELIUM = 353  # " helium" in the tiny tokenizer: the keyword the classifier flags
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, tokenizer):
    """One server for the module's tests (starting one takes seconds of CPU)."""
    tmp_path = tmp_path_factory.mktemp("moderation-server")
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


def test_a_job_on_a_classification_file_makes_a_moderation_model(server, tmp_path, tiny_model_dir):
    url, home = server
    client = openai.OpenAI(base_url=url, api_key=create_key(home), max_retries=0, timeout=60)
    rows = [{"text": "I will hurt you", "labels": ["violence", "harassment/threatening"]},
            {"text": "how do I kill a stuck process", "labels": []},
            {"text": "you are worthless", "labels": ["harassment"]}, {"text": "what is gold", "labels": []}] * 2
    path = tmp_path / "moderation.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    training = client.files.create(file=path.open("rb"), purpose="fine-tune")
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps(row) + "\n" for row in rows[:4]))
    validation = client.files.create(file=valid.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=training.id, suffix="mod",
                                         validation_file=validation.id, hyperparameters={"n_epochs": 1, "batch_size": 4})
    job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in {"succeeded", "failed"} and j)
    assert job.status == "succeeded", job.error
    answer = client.moderations.create(model=job.fine_tuned_model, input=["I will hurt you", "what is gold"])
    assert answer.model == job.fine_tuned_model and len(answer.results) == 2
    scores = answer.results[0].category_scores
    assert 0 < scores.violence < 1 and 0 < scores.harassment < 1 and scores.sexual == 0  # trained labels only
    with pytest.raises(openai.BadRequestError, match="/v1/moderations"):
        client.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
