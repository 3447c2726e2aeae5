"""The whole flow through the official `openai` package against a real `tunesmith serve` on 127.0.0.1."""
import signal

import openai
import pytest

from tests.serve.server import FACTS, create_key, served, wait_for, write_chat_file

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def server(tmp_path, tiny_model_dir):
    with served(tmp_path / "home", tiny_model_dir, "--checkpoint-every", "2") as url:
        yield f"{url}/v1", tmp_path / "home"


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_upload_finetune_follow_events_chat_cancel_and_isolate_keys(server, tmp_path, tiny_model_dir):
    url, home = server
    alice, bob = client(url, create_key(home)), client(url, create_key(home))
    base = tiny_model_dir.name
    assert base in [m.id for m in alice.models.list()]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() + "not json\n")
    with pytest.raises(openai.BadRequestError, match="line 11"):
        alice.files.create(file=bad.open("rb"), purpose="fine-tune")
    train = alice.files.create(file=write_chat_file(tmp_path / "train.jsonl").open("rb"), purpose="fine-tune")
    valid = alice.files.create(file=write_chat_file(tmp_path / "valid.jsonl", FACTS[:3]).open("rb"), purpose="fine-tune")
    assert train.id.startswith("file-") and train.filename == "train.jsonl"
    assert alice.files.content(train.id).content == (tmp_path / "train.jsonl").read_bytes()

    job = alice.fine_tuning.jobs.create(model=base, training_file=train.id, validation_file=valid.id, suffix="demo",
                                        hyperparameters={"n_epochs": 2, "batch_size": 4}, seed=3)
    assert job.id.startswith("ftjob-") and job.status == "validating_files"
    job = wait_for(lambda: (j := alice.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j)
    events = alice.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert job.status == "succeeded", [e.message for e in events]
    assert job.fine_tuned_model == f"ft:{base}:demo:{job.id.removeprefix('ftjob-')}" and job.trained_tokens > 0
    messages = [e.message for e in reversed(events)]  # oldest first
    statuses = [m for m in messages if m.startswith(("Files validated", "Fine-tuning job started", "The job has"))]
    assert statuses == ["Files validated; job queued", "Fine-tuning job started", "The job has successfully completed"]
    assert sum(e.type == "metrics" for e in events) == 6  # 10 rows, batch 4 → 3 steps × 2 epochs
    checkpoints = alice.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [6, 4, 2]
    assert checkpoints[0].metrics.train_loss > 0 and checkpoints[0].metrics.valid_loss > 0

    model = job.fine_tuned_model
    assert model in [m.id for m in alice.models.list()]
    question = [{"role": "user", "content": "What is the symbol for gold?"}]
    answer = alice.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=8)
    assert answer.choices[0].finish_reason in {"stop", "length"}
    assert answer.usage.completion_tokens <= 8 and answer.usage.prompt_tokens > 5
    stream = alice.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=8, stream=True,
                                           stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content and chunks[-1].usage.total_tokens == answer.usage.total_tokens
    two = alice.chat.completions.create(model=model, messages=question, n=2, max_completion_tokens=4, seed=1)
    assert [c.index for c in two.choices] == [0, 1]
    text = alice.completions.create(model=base, prompt="The symbol for gold", max_tokens=3, temperature=0)
    assert text.choices[0].finish_reason in {"stop", "length"}

    second = alice.fine_tuning.jobs.create(model=base, training_file=train.id)
    assert alice.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        alice.fine_tuning.jobs.cancel(second.id)
    with pytest.raises(openai.ConflictError):
        alice.fine_tuning.jobs.pause(job.id)
    page = alice.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    assert [j.id for j in alice.fine_tuning.jobs.list(after=second.id, limit=5).data] == [job.id]

    # another key sees none of it: 404 everywhere, empty lists
    for call in [lambda: bob.fine_tuning.jobs.retrieve(job.id), lambda: bob.files.retrieve(train.id),
                 lambda: bob.files.content(train.id), lambda: bob.models.retrieve(model),
                 lambda: bob.fine_tuning.jobs.cancel(second.id), lambda: bob.models.delete(model),
                 lambda: bob.chat.completions.create(model=model, messages=question, max_tokens=2)]:
        with pytest.raises(openai.NotFoundError):
            call()
    assert bob.fine_tuning.jobs.list().data == [] and bob.files.list().data == []
    assert model not in [m.id for m in bob.models.list()]
    with pytest.raises(openai.AuthenticationError):
        client(url, "ts-wrong").models.list()

    assert alice.models.delete(model).deleted
    with pytest.raises(openai.NotFoundError):
        alice.models.retrieve(model)
