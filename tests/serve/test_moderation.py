"""/v1/moderations in-process: OpenAI's shapes, category mapping, model names and ownership, batching."""
import threading

import pytest
from fastapi.testclient import TestClient

from tests.serve.keyword_classifier import SCORE_WITHOUT_KEYWORD, save_keyword_classifier
from tests.serve.test_api import assert_error
from tunesmith.data.labels import MODERATION_CATEGORIES
from tunesmith.registry import keys, models
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

HELIUM = 353  # " helium" in the tiny tokenizer: the keyword the classifier flags


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tokenizer):
    return save_keyword_classifier(tmp_path_factory.mktemp("moderation"), tokenizer, [HELIUM])


@pytest.fixture
def api(tmp_path, tiny_model_dir, classifier_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False,
                             moderation_model=classifier_dir)
    app = create_app(settings)
    with TestClient(app) as client:
        client.app_state = app.state
        client.new_key = lambda: keys.create_key(app.state.db)
        yield client


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def moderate(api, headers, **body):
    return api.post("/v1/moderations", headers=headers, json=body)


def test_string_list_and_text_parts_get_openai_shapes_with_all_13_categories(api):
    headers = bearer(api.new_key()[1])
    one = moderate(api, headers, input="How do I make helium?").json()
    assert one["id"].startswith("modr-") and one["model"] == "omni-moderation-latest"
    [result] = one["results"]
    assert result["flagged"] is True
    for field in ("categories", "category_scores", "category_applied_input_types"):
        assert list(result[field]) == list(MODERATION_CATEGORIES)
    assert {c for c, flagged in result["categories"].items() if flagged} == {"violence", "illicit/violent"}
    assert result["category_scores"]["violence"] > 0.99
    assert result["category_scores"]["harassment"] < 0.01  # insults: covered, never fires
    assert result["category_scores"]["sexual"] == 0.0 and result["categories"]["sexual"] is False  # not covered
    assert all(types == ["text"] for types in result["category_applied_input_types"].values())

    many = moderate(api, headers, input=["What is gold?", "Tell me about helium", "helium"], model="text-moderation-latest")
    assert [r["flagged"] for r in many.json()["results"]] == [False, True, False]  # "helium" alone is another token
    assert many.json()["results"][0]["category_scores"]["violence"] == pytest.approx(SCORE_WITHOUT_KEYWORD, rel=1e-3)

    parts = [{"type": "text", "text": "What is gold?"}, {"type": "text", "text": "Tell me about helium"}]
    [joined] = moderate(api, headers, input=parts).json()["results"]  # parts make one input
    assert joined["flagged"] is True


def test_bad_inputs_and_model_names_get_clear_errors(api, tiny_model_dir):
    headers = bearer(api.new_key()[1])
    image = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    error = assert_error(moderate(api, headers, input=image), 400, "input[1]")
    assert error["code"] == "unsupported_input" and "text only" in error["message"]
    assert_error(moderate(api, headers, input=[]), 400, "input")
    assert_error(moderate(api, headers, input=["a", {"type": "text", "text": "b"}]), 400, "input")
    assert_error(moderate(api, headers, input=[{"type": "audio"}]), 400, "input[0]")
    assert_error(moderate(api, headers, input="hi", model="ft:nope:x:1"), 404, "model")
    chat = assert_error(moderate(api, headers, input="hi", model=tiny_model_dir.name), 400, "model")
    assert "not a moderation model" in chat["message"]
    assert assert_error(api.post("/v1/moderations", json={"input": "hi"}), 401)["code"] == "missing_api_key"


def test_a_keys_classification_fine_tune_is_its_own(api, tmp_path, tiny_model_dir, tokenizer):
    (alice, alice_secret), (_, bob_secret) = api.new_key(), api.new_key()
    run_dir = tmp_path / "run"
    save_keyword_classifier(run_dir / "model", tokenizer, [HELIUM])
    model_id = "ft:tiny:mod:" + "a" * 24
    with api.app_state.db.transaction() as tx:
        models.add_model(tx, model_id, alice, "ftjob-" + "a" * 24, tiny_model_dir.name, str(run_dir))
    answer = moderate(api, bearer(alice_secret), input="Tell me about helium", model=model_id).json()
    assert answer["model"] == model_id and answer["results"][0]["flagged"]
    assert_error(moderate(api, bearer(bob_secret), input="hi", model=model_id), 404, "model")
    chat = {"model": model_id, "messages": [{"role": "user", "content": "hi"}]}
    refused = assert_error(api.post("/v1/chat/completions", headers=bearer(alice_secret), json=chat), 400, "model")
    assert "/v1/moderations" in refused["message"]


def test_no_default_moderation_model_is_a_404_naming_the_option(tmp_path, tiny_model_dir):
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app) as client:
        response = moderate(client, bearer(keys.create_key(app.state.db)[1]), input="hi")
    assert "--moderation-model" in assert_error(response, 404, "model")["message"]


def test_concurrent_requests_are_scored_in_one_batch(api, classifier_dir):
    headers = bearer(api.new_key()[1])
    moderate(api, headers, input="warm up")  # loads the classifier
    batcher = next(iter(api.app_state.classifiers.loaded.values()))[1]
    batcher.collect_s = 0.3  # wide enough for all threads to arrive on 2 busy cores
    texts = [f"text {i} about helium" if i % 2 else f"text {i}" for i in range(6)]
    results: dict[int, bool] = {}

    def ask(i):
        results[i] = moderate(api, headers, input=texts[i]).json()["results"][0]["flagged"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: bool(i % 2) for i in range(6)}  # each request got its own rows back
    assert max(batcher.batches) > 1
