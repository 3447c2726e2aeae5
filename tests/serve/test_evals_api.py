"""OpenAI's Evals API on the tiny model, through the official client: a run's samples are the model's chat answers,
graded by the eval's criteria into pass, fail and error; given answers graded without a model; every bad input a
400 naming the row and field before anything runs; cancel, delete, and a stopped server's run resumed without
grading a row twice."""
import json
import time

import pytest
from fastapi.testclient import TestClient

from tunesmith.registry import evals, keys
from tunesmith.registry.file_readers import unfinished_readers
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

ITEM_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
               "required": ["question", "answer"]}
EXACT = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}"}
CLOSE = {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
         "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}", "pass_threshold": 0.9}
ASK = {"type": "template", "template": [{"role": "system", "content": "Answer briefly."},
                                        {"role": "user", "content": "Q: {{ item.question }}"}]}
SAMPLING = {"temperature": 0, "max_completion_tokens": 4}


def serving(home, tiny_model_dir, **settings):
    return TestClient(create_app(ServeSettings(home=home, bases=[str(tiny_model_dir)], run_jobs=False, **settings)))


def official_client(api, secret):
    import openai

    return openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=api, max_retries=0)


@pytest.fixture
def served(tmp_path, tiny_model_dir):
    with serving(tmp_path / "home", tiny_model_dir) as api:
        secret = keys.create_key(api.app.state.db)[1]
        yield official_client(api, secret), tiny_model_dir.name


def finished(client, eval_id, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    while (run := client.evals.runs.retrieve(run_id, eval_id=eval_id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    return run


def qa_eval(client, criteria=(EXACT, CLOSE)):
    return client.evals.create(name="qa", data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA,
                                                              "include_sample_schema": True},
                               testing_criteria=list(criteria), metadata={"team": "support"})


def completions(model, content, **extra):
    return {"type": "completions", "model": model, "input_messages": ASK, "sampling_params": SAMPLING,
            "source": {"type": "file_content", "content": content}, **extra}


def test_a_run_grades_the_models_chat_answers(served):
    client, model = served
    questions = [f"what is {n}?" for n in range(6)]
    direct = [client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": f"Q: {q}"}], **SAMPLING)
        for q in questions]
    texts = [answer.choices[0].message.content for answer in direct]
    # the first three rows expect the model's own answer, the others something it did not say
    content = [{"item": {"question": q, "answer": text if n < 3 else text + " — and more besides"}}
               for n, (q, text) in enumerate(zip(questions, texts))]
    created = qa_eval(client)
    assert created.data_source_config.type == "custom"
    assert created.data_source_config.schema_["properties"]["item"] == ITEM_SCHEMA
    assert [c.name for c in created.testing_criteria] == ["exact", "close"]
    run = client.evals.runs.create(created.id, name="base", data_source=completions(model, content))
    assert run.status == "queued" and run.result_counts.total == 6
    run = finished(client, created.id, run.id)
    assert run.status == "completed", run
    assert (run.result_counts.passed, run.result_counts.failed, run.result_counts.errored) == (3, 3, 0)
    results = {r.testing_criteria: (r.passed, r.failed) for r in run.per_testing_criteria_results}
    assert results == {"exact": (3, 3), "close": (3, 3)}
    (usage,) = run.per_model_usage
    assert usage.run_model_name == model and usage.invocation_count == 6
    assert usage.completion_tokens == sum(answer.usage.completion_tokens for answer in direct)
    items = sorted(client.evals.runs.output_items.list(run.id, eval_id=created.id), key=lambda i: i.datasource_item_id)
    assert [item.datasource_item_id for item in items] == list(range(6))
    for item, text, row in zip(items, texts, content):
        assert item.sample.output[0].content == text  # the run's sample is the chat answer
        assert [m.content for m in item.sample.input] == ["Answer briefly.", f"Q: {row['item']['question']}"]
        assert item.datasource_item == row["item"]
        assert item.status == ("pass" if item.datasource_item_id < 3 else "fail")
        assert {r.name: r.passed for r in item.results} == {"exact": item.status == "pass", "close": item.status == "pass"}
    failing = client.evals.runs.output_items.list(run.id, eval_id=created.id, status="fail")
    assert sorted(i.datasource_item_id for i in failing) == [3, 4, 5]
    one = client.evals.runs.output_items.retrieve(items[0].id, eval_id=created.id, run_id=run.id)
    assert one.results[0].score == 1.0 and one.sample.usage.completion_tokens == direct[0].usage.completion_tokens
    assert [r.id for r in client.evals.runs.list(created.id)] == [run.id]
    from tunesmith.serve.retention import expire

    state = client._client.app.state
    settings = state.settings.model_copy(update={"retention_days": 1})
    assert expire(state.db, settings, time.time() + 2 * 86400) == [run.id]  # its items copy the rows: expired too
    assert list(client.evals.runs.list(created.id)) == []


def test_a_jsonl_run_grades_the_answers_its_rows_carry(served):
    client, _ = served
    label = {"type": "string_check", "name": "label", "operation": "eq", "input": "{{ sample.output_json.label }}",
             "reference": "{{ item.answer }}"}
    created = qa_eval(client, [label])
    content = [{"item": {"question": "q1", "answer": "spam"}, "sample": {"output_text": '{"label": "spam"}'}},
               {"item": {"question": "q2", "answer": "spam"}, "sample": {"output_text": '{"label": "ham"}'}},
               {"item": {"question": "q3", "answer": "ham"}, "sample": {"output_text": "not json"}}]
    run = client.evals.runs.create(created.id, data_source={"type": "jsonl", "source": {
        "type": "file_content", "content": content}})
    run = finished(client, created.id, run.id)
    assert run.model == "" and run.per_model_usage == []
    assert (run.result_counts.passed, run.result_counts.failed, run.result_counts.errored) == (1, 1, 1)
    errored = client.evals.runs.output_items.list(run.id, eval_id=created.id, status="error").data
    assert [item.datasource_item_id for item in errored] == [2]
    assert "output_json is null" in errored[0].results[0].error


def test_rows_from_an_uploaded_file(served):
    import openai

    client, model = served
    rows = [{"item": {"question": f"q{n}", "answer": "x"}} for n in range(3)]
    bad = b'{"item": {"question": "q"}}\n{"question": "q", "answer": "a"}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", bad), purpose="evals")
    assert "bad.jsonl line 2" in refused.value.message and "\"item\"" in refused.value.message
    upload = client.files.create(file=("rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                                 purpose="evals")
    assert upload.status == "processed"
    created = qa_eval(client, [EXACT])
    run = client.evals.runs.create(created.id, data_source={
        "type": "completions", "model": model, "input_messages": ASK, "sampling_params": SAMPLING,
        "source": {"type": "file_id", "id": upload.id}})
    run = finished(client, created.id, run.id)
    assert run.status == "completed" and run.result_counts.total == 3
    assert sum([run.result_counts.passed, run.result_counts.failed, run.result_counts.errored]) == 3
    erased = client.files.delete(upload.id)  # an erasure reaches the run's output items, which copy the rows
    assert erased.deleted and erased.model_extra["deleted_eval_runs"] == [run.id]
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=created.id)
    audit = client._client.app.state.db.query("SELECT action, detail FROM audit_log WHERE object_id = ?", (run.id,))
    assert audit[-1]["action"] == "eval.run.deleted" and upload.id in audit[-1]["detail"]


def refusal(call, error: str = "BadRequestError") -> tuple[str, str]:
    import openai

    with pytest.raises(getattr(openai, error)) as refused:
        call()
    return refused.value.body["param"], refused.value.message


def test_bad_evals_and_runs_are_refused_naming_the_field(served):
    client, model = served
    custom = {"type": "custom", "item_schema": ITEM_SCHEMA}
    create = lambda criteria, config=custom: client.evals.create(data_source_config=config, testing_criteria=criteria)
    label = {"type": "label_model", "name": "judge", "model": "no-such-judge", "labels": ["a", "b"],
             "passing_labels": ["a"], "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}
    assert refusal(lambda: create([EXACT, label]), "NotFoundError")[0] == "testing_criteria[1].model"
    assert refusal(lambda: create([{**label, "model": model, "passing_labels": ["c"]}]))[0] == \
        "testing_criteria[0].passing_labels"
    assert refusal(lambda: create([{"type": "multi", "name": "m", "graders": {"e": EXACT}, "calculate_output": "e"}]))[0] \
        == "testing_criteria[0].type"
    assert refusal(lambda: create([{**CLOSE, "pass_threshold": None}]))[0] == "testing_criteria[0].pass_threshold"
    assert refusal(lambda: create([EXACT, {**CLOSE, "name": "exact"}]))[0] == "testing_criteria[1].name"
    assert refusal(lambda: create([{**EXACT, "operation": "equals"}]))[0] == "testing_criteria[0].operation"
    python = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0\n"}
    param, message = refusal(lambda: create([python]))
    assert param == "testing_criteria[0]" and "--allow-python-graders" in message
    assert refusal(lambda: create([EXACT], {"type": "stored_completions"}))[0] == "data_source_config.type"
    assert refusal(lambda: create([EXACT], {"type": "custom", "item_schema": {"type": 7}}))[0] == \
        "data_source_config.item_schema"

    created = qa_eval(client, [EXACT])
    run = lambda source: client.evals.runs.create(created.id, data_source=source)
    good = {"item": {"question": "q", "answer": "a"}}
    param, message = refusal(lambda: run(completions(model, [good, {"item": {"question": "q", "answer": 3}}])))
    assert param == "data_source.source" and "content[1].item.answer: 3 is not of type 'string'" in message
    param, message = refusal(lambda: run({"type": "jsonl", "source": {"type": "file_content", "content": [good]}}))
    assert "no \"sample\"" in message
    assert refusal(lambda: run(completions("no-such-model", [good])), "NotFoundError")[0] == "data_source.model"
    asks_context = {"type": "template", "template": [{"role": "user", "content": "{{ item.context }}"}]}
    param, message = refusal(lambda: run(completions(model, [good], input_messages=asks_context)))
    assert param == "data_source.input_messages" and "item.context" in message
    param, _ = refusal(lambda: run(completions(model, [good], sampling_params={"temperature": 9})))
    assert param == "data_source.sampling_params.temperature"
    assert refusal(lambda: run({**completions(model, [good]), "type": "logs"}))[0] == "data_source.type"
    param, message = refusal(lambda: run({**completions(model, [good], sampling_params={"seed": 1}),
                                          "type": "responses"}))
    assert param == "data_source.sampling_params" and "takes no seed" in message
    assert client.evals.runs.list(created.id).data == []  # nothing was created by the refusals


def test_update_list_delete_and_other_keys(served, tmp_path):
    import openai

    client, model = served
    first, second = qa_eval(client), qa_eval(client, [EXACT])
    assert [e.id for e in client.evals.list()] == [first.id, second.id]
    assert [e.id for e in client.evals.list(order="desc")] == [second.id, first.id]
    renamed = client.evals.update(first.id, name="qa v2", metadata={"team": "billing"})
    assert renamed.name == "qa v2" and renamed.metadata == {"team": "billing"}
    run = finished(client, second.id, client.evals.runs.create(second.id, data_source=completions(
        model, [{"item": {"question": "q", "answer": "a"}}])).id)
    other = official_client(client._client, keys.create_key(client._client.app.state.db)[1])
    with pytest.raises(openai.NotFoundError):
        other.evals.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.evals.runs.retrieve(run.id, eval_id=second.id)
    assert client.evals.runs.delete(run.id, eval_id=second.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=second.id)
    db = client._client.app.state.db
    owner = evals.get_eval(db, keys.list_keys(db)[0].id, first.id).owner
    queued = evals.create_run(db, evals.get_eval(db, owner, first.id), "waiting", model,
                              completions(model, [{"item": {"question": "q", "answer": "a"}}]), None, 1)
    stopping = client._client.app.state.evals.stopping
    assert client.evals.delete(first.id).deleted
    assert [e.id for e in client.evals.list()] == [second.id]
    assert evals.get_run(db, owner, first.id, queued.id) is None and queued.id in stopping  # told to stop


def test_a_stopped_servers_run_resumes_without_grading_twice_and_a_cancel_stops_it(tmp_path, tiny_model_dir,
                                                                                    monkeypatch):
    from tunesmith.serve.batcher import Batcher

    asked, submit = [], Batcher.submit

    def recorded(self, *args, **kwargs):
        request = submit(self, *args, **kwargs)
        asked.append(request.background)
        return request

    monkeypatch.setattr(Batcher, "submit", recorded)
    home, model = tmp_path / "home", tiny_model_dir.name
    content = [{"item": {"question": f"q{n}", "answer": "a"}} for n in range(5)]
    with serving(home, tiny_model_dir) as api:
        key_id, secret = keys.create_key(api.app.state.db)
        created = qa_eval(official_client(api, secret), [EXACT])
        found = evals.get_eval(api.app.state.db, key_id, created.id)
        # what a server stopped mid-run leaves: the run in progress with row 1 graded
        run = evals.create_run(api.app.state.db, found, "resumed", model, completions(model, content), None, 5)
        evals.move_run(api.app.state.db, run, "in_progress")
        kept = [{"name": "exact", "type": "string_check", "passed": True, "score": 1.0, "sample": None}]
        evals.record_item(api.app.state.db, run, 1, "pass", content[1]["item"], kept, {"output": []})
        waiting = evals.create_run(api.app.state.db, found, "cancelled", model, completions(model, content), None, 5)
        assert unfinished_readers(api.app.state.db, key_id, "file-none") == {"jobs": [], "batches": [], "eval_runs": []}
    with serving(home, tiny_model_dir) as api:  # the next start
        client = official_client(api, secret)
        client.evals.runs.cancel(waiting.id, eval_id=created.id)
        resumed = finished(client, created.id, run.id)
        assert resumed.status == "completed" and resumed.result_counts.total == 5
        items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id, limit=100))
        assert sorted(item.datasource_item_id for item in items) == [0, 1, 2, 3, 4]
        (row_one,) = [item for item in items if item.datasource_item_id == 1]
        assert row_one.sample.output == [] and row_one.results[0].passed  # as recorded: not asked nor graded again
        assert all(item.sample.output for item in items if item.datasource_item_id != 1)
        assert asked == [True] * 4  # rows 0, 2, 3, 4, as background rows (they yield to chats)
        assert resumed.result_counts.passed >= 1
        cancelled = client.evals.runs.retrieve(waiting.id, eval_id=created.id)
        assert cancelled.status == "canceled"
        assert list(client.evals.runs.output_items.list(waiting.id, eval_id=created.id)) == []


def test_an_unfinished_run_keeps_its_file(served):
    client, model = served
    upload = client.files.create(file=("rows.jsonl", b'{"item": {"question": "q", "answer": "a"}}\n'), purpose="evals")
    db = client._client.app.state.db
    key_id = keys.list_keys(db)[0].id
    found = evals.get_eval(db, key_id, qa_eval(client, [EXACT]).id)
    source = {"type": "completions", "model": model, "source": {"type": "file_id", "id": upload.id}}
    run = evals.create_run(db, found, "queued", model, source, None, 1)  # in the registry: the runner is not told
    assert unfinished_readers(db, key_id, upload.id)["eval_runs"] == [run.id]
    import openai
    with pytest.raises(openai.ConflictError) as refused:
        client.files.delete(upload.id)
    assert run.id in refused.value.message
    evals.move_run(db, run, "canceled")
    assert client.files.delete(upload.id).deleted


def test_python_criteria_fail_a_run_when_the_server_no_longer_allows_them(tmp_path, tiny_model_dir):
    home, model = tmp_path / "home", tiny_model_dir.name
    python = {"type": "python", "name": "long", "pass_threshold": 0.5,
              "source": "def grade(sample, item):\n    return min(1.0, len(sample['output_text']) / 10)\n"}
    content = [{"item": {"question": "q", "answer": "a"}, "sample": {"output_text": text}} for text in ("hi", "a" * 12)]
    with serving(home, tiny_model_dir, allow_python_graders=True) as api:
        key_id, secret = keys.create_key(api.app.state.db)
        client = official_client(api, secret)
        created = qa_eval(client, [python])
        graded = finished(client, created.id, client.evals.runs.create(created.id, data_source={
            "type": "jsonl", "source": {"type": "file_content", "content": content}}).id)
        assert (graded.result_counts.passed, graded.result_counts.failed) == (1, 1)
        scores = sorted(i.results[0].score for i in client.evals.runs.output_items.list(graded.id, eval_id=created.id))
        assert scores == [0.2, 1.0]
        found = evals.get_eval(api.app.state.db, key_id, created.id)
        left = evals.create_run(api.app.state.db, found, "left", "", {"type": "jsonl", "source": {
            "type": "file_content", "content": content}}, None, 2)  # queued when the server stopped
    with serving(home, tiny_model_dir) as api:  # started again without --allow-python-graders
        client = official_client(api, secret)
        stopped = finished(client, created.id, left.id)
        assert stopped.status == "failed" and stopped.error.code == "python_graders_disabled"
        assert list(client.evals.runs.output_items.list(left.id, eval_id=created.id)) == []


def test_model_graders_ask_a_judge_among_the_keys_models(served):
    client, model = served
    label = {"type": "label_model", "name": "on_topic", "model": model, "labels": ["yes", "no"],
             "passing_labels": ["yes"], "input": [
                 {"role": "developer", "content": "Does the reply answer {{ item.question }}? Say yes or no."},
                 {"role": "user", "content": "{{ sample.output_text }}"}]}
    score = {"type": "score_model", "name": "quality", "model": model, "range": [1, 5],
             "sampling_params": {"max_completions_tokens": 12},
             "input": [{"role": "user", "content": "Rate 1-5: {{ sample.output_text }}"}]}
    created = qa_eval(client, [label, score])
    assert created.testing_criteria[1].range == [1.0, 5.0]
    content = [{"item": {"question": f"q{n}", "answer": "a"}} for n in range(4)]
    run = finished(client, created.id, client.evals.runs.create(created.id, data_source=completions(model, content)).id)
    assert run.status == "completed", run
    items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert len(items) == 4
    for item in items:
        on_topic, quality = item.results
        judged = on_topic.sample  # the judge's exchange, as OpenAI's results carry it
        assert judged["input"][0] == {"role": "system", "content": f"Does the reply answer "
                                                                   f"{item.datasource_item['question']}? Say yes or no."}
        assert judged["input"][1]["content"] == item.sample.output[0].content  # it read the run's answer
        label_chosen = json.loads(judged["output"][0]["content"])["label"]  # always a label: structured outputs
        assert label_chosen in ("yes", "no") and on_topic.passed == (label_chosen == "yes")
        assert on_topic.score == (1.0 if label_chosen == "yes" else 0.0)
        if getattr(quality, "error", None) is None:  # a score cut at its 12 tokens is an error, never a guess
            assert 1.0 <= quality.score <= 5.0 and quality.passed == (quality.score >= 3.0)
        else:
            assert "not the JSON" in quality.error
    (usage,) = run.per_model_usage  # the run's model and its judges are one model here
    assert usage.invocation_count == 4 * 3


@pytest.mark.timeout(90)  # a regression waits for ever: fail it instead
def test_more_judged_rows_than_server_threads_finish(served):
    """64 rows answered at once, each graded by a judge whose answer needs a server worker thread: the graders wait
    in their own pool, so the server's worker threads (40; 4 here, to make the wait certain) stay free for the
    judges' requests."""
    import anyio.to_thread

    client, model = served

    def few_threads():
        anyio.to_thread.current_default_thread_limiter().total_tokens = 4

    client._client.portal.call(few_threads)
    label = {"type": "label_model", "name": "judge", "model": model, "labels": ["a", "b"], "passing_labels": ["a"],
             "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}
    created = qa_eval(client, [label])
    content = [{"item": {"question": f"q{n}", "answer": "a"}} for n in range(64)]
    run = finished(client, created.id, client.evals.runs.create(created.id, data_source=completions(model, content)).id,
                   timeout=120)
    assert run.status == "completed" and run.result_counts.passed + run.result_counts.failed == 64


def test_a_responses_run_asks_through_the_responses_api_and_grades_alike(served):
    client, model = served
    created = qa_eval(client, [EXACT])
    content = [{"item": {"question": f"what is {n}?", "answer": "x"}} for n in range(3)]
    by_chat = finished(client, created.id, client.evals.runs.create(
        created.id, data_source=completions(model, content)).id)
    by_responses = finished(client, created.id, client.evals.runs.create(
        created.id, data_source={**completions(model, content), "type": "responses"}).id)
    assert by_responses.status == "completed" and by_responses.data_source.type == "responses"

    def answers(run):
        items = client.evals.runs.output_items.list(run.id, eval_id=created.id)
        return sorted((i.datasource_item_id, i.sample.output[0].content, i.status) for i in items)

    assert answers(by_responses) == answers(by_chat)  # the same greedy answers, graded the same
    assert by_responses.per_model_usage[0].completion_tokens == by_chat.per_model_usage[0].completion_tokens


def test_a_completions_runs_answers_are_graded_together_as_they_come(tmp_path, tiny_model_dir, monkeypatch):
    """A python criterion starts a subprocess per grading call: the rows answered together share one call instead
    of one each (24 rows took 24 subprocesses before)."""
    from tunesmith.train import graders

    calls = []
    real = graders.run_python_grader
    monkeypatch.setattr(graders, "run_python_grader",
                        lambda source, samples, items, timeout_s: calls.append(len(samples)) or real(source, samples, items, timeout_s))
    python = {"type": "python", "name": "short", "pass_threshold": 0.5,
              "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) < 100 else 0.0\n"}
    content = [{"item": {"question": f"q{n}", "answer": "a"}} for n in range(24)]
    with serving(tmp_path / "home", tiny_model_dir, allow_python_graders=True) as api:
        client = official_client(api, keys.create_key(api.app.state.db)[1])
        created = qa_eval(client, [python, EXACT])
        run = finished(client, created.id, client.evals.runs.create(created.id, data_source=completions(
            tiny_model_dir.name, content)).id)
        items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id, limit=100))
    assert run.status == "completed" and run.result_counts.total == 24 and len(items) == 24
    assert sum(calls) == 24 and len(calls) < 24 / 2, calls  # every row graded once, most of them together
    assert all(item.results[0].passed and item.results[0].score == 1.0 for item in items)


def test_one_keys_long_run_does_not_hold_another_keys_back(tmp_path, tiny_model_dir, monkeypatch):
    """Each key's runs go one at a time, different keys' side by side: key B's run completes while key A's is still
    answering (A's rows wait here until B's run is done; one piece at a time for everyone, B would wait on A)."""
    import asyncio
    import threading

    from tunesmith.serve.evals import EvalRunner

    release, real = threading.Event(), EvalRunner.sample
    with serving(tmp_path / "home", tiny_model_dir) as api:
        (slow_key, slow_secret), (_, quick_secret) = keys.create_key(api.app.state.db), keys.create_key(api.app.state.db)

        async def sample(self, run, messages, row):
            if run.owner == slow_key:
                await asyncio.to_thread(release.wait, 30)
            return await real(self, run, messages, row)

        monkeypatch.setattr(EvalRunner, "sample", sample)
        slow, quick = official_client(api, slow_secret), official_client(api, quick_secret)
        rows = [{"item": {"question": f"q{n}", "answer": "a"}} for n in range(3)]
        slow_eval, quick_eval = qa_eval(slow), qa_eval(quick)
        slow_run = slow.evals.runs.create(slow_eval.id, data_source=completions(tiny_model_dir.name, rows))
        quick_run = finished(quick, quick_eval.id, quick.evals.runs.create(
            quick_eval.id, data_source=completions(tiny_model_dir.name, rows[:2])).id, timeout=20)
        try:
            assert quick_run.status == "completed" and quick_run.result_counts.total == 2
            assert slow.evals.runs.retrieve(slow_run.id, eval_id=slow_eval.id).status == "in_progress"
        finally:
            release.set()
        assert finished(slow, slow_eval.id, slow_run.id).result_counts.total == 3
