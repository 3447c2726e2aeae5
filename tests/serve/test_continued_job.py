"""POST /v1/fine_tuning/jobs with `model: "ft:..."` continues that fine-tune, as OpenAI's API does."""
import json
from pathlib import Path

import openai
import pytest

from tests.serve.server import FACTS, create_key, served, wait_for, write_chat_file

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def server(tmp_path, tiny_model_dir):
    with served(tmp_path / "home", tiny_model_dir, "--checkpoint-every", "50") as url:
        yield f"{url}/v1", tmp_path / "home"


def finished(client, job):
    job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j)
    assert job.status == "succeeded", [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    return job


def test_a_job_on_a_fine_tuned_model_continues_it(server, tmp_path, tiny_model_dir):
    url, home = server
    client = openai.OpenAI(base_url=url, api_key=create_key(home), max_retries=0, timeout=60)
    base = tiny_model_dir.name
    old = client.files.create(file=write_chat_file(tmp_path / "old.jsonl").open("rb"), purpose="fine-tune")
    new = client.files.create(file=write_chat_file(tmp_path / "new.jsonl", FACTS[:4]).open("rb"), purpose="fine-tune")
    first = finished(client, client.fine_tuning.jobs.create(model=base, training_file=old.id, suffix="v1",
                                                             hyperparameters={"n_epochs": 1, "batch_size": 5}))
    second = finished(client, client.fine_tuning.jobs.create(model=first.fine_tuned_model, training_file=new.id,
                                                              suffix="v2", hyperparameters={"n_epochs": 1, "batch_size": 4}))
    assert second.model == first.fine_tuned_model
    assert second.fine_tuned_model.startswith(f"ft:{base}:v2:")  # named after the root base, as OpenAI names it
    record = json.loads((home / "jobs" / second.id / "run" / "run.json").read_text())
    assert record["parent"]["run_dir"] == str((home / "jobs" / first.id / "run").resolve())
    assert record["parent"]["adapter"] == "continue"
    answer = client.chat.completions.create(model=second.fine_tuned_model, max_tokens=4,
                                            messages=[{"role": "user", "content": "What is the symbol for tin?"}])
    assert answer.choices[0].finish_reason in {"stop", "length"}
    with pytest.raises(openai.NotFoundError, match="neither a base model"):
        client.fine_tuning.jobs.create(model="ft:nobody:x:123", training_file=new.id)
