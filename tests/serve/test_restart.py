"""SIGKILL the server while a job trains; a new server on the same home resumes it from its last checkpoint."""
import signal
from pathlib import Path

import openai

from tests.serve.server import create_key, free_port, start_server, wait_for, write_chat_file


def test_sigkill_mid_job_then_restart_resumes_from_checkpoint_and_succeeds(tmp_path, tiny_model_dir):
    home, port = tmp_path / "home", free_port()
    server = start_server(home, tiny_model_dir, port, "--checkpoint-every", "10")
    key = create_key(home)
    api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
    train = api.files.create(file=write_chat_file(tmp_path / "train.jsonl").open("rb"), purpose="fine-tune")
    job = api.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=train.id,
                                      hyperparameters={"n_epochs": 20, "batch_size": 1})  # 200 steps
    wait_for(lambda: api.fine_tuning.jobs.checkpoints.list(job.id).data, every=0.05)
    assert api.fine_tuning.jobs.pause(job.id).status == "paused"  # pause stops the training process ...
    wait_for(lambda: not processes_mentioning(str(home / "jobs" / job.id)), timeout=20)
    first = api.fine_tuning.jobs.checkpoints.list(job.id).data[0].step_number
    assert api.fine_tuning.jobs.resume(job.id).status == "queued"  # ... resume continues from its checkpoint
    wait_for(lambda: api.fine_tuning.jobs.checkpoints.list(job.id).data[0].step_number > first, every=0.05)
    assert api.fine_tuning.jobs.retrieve(job.id).status == "running"
    server.send_signal(signal.SIGKILL)
    server.wait()
    wait_for(lambda: not processes_mentioning(str(home / "jobs" / job.id)), timeout=10)  # died with the server
    run_dir = home / "jobs" / job.id / "run"
    assert not (run_dir / "model").exists(), "the job must really have been interrupted"

    server = start_server(home, tiny_model_dir, port, "--checkpoint-every", "10")
    try:
        done = wait_for(lambda: (j := api.fine_tuning.jobs.retrieve(job.id)).status in {"succeeded", "failed"} and j)
        events = api.fine_tuning.jobs.list_events(job.id, limit=1000).data
        assert done.status == "succeeded", [e.message for e in events]
        assert sum(e.message.startswith("Resuming from checkpoint at step") for e in events) == 2  # resume, restart
        assert sorted(e.data["step"] for e in events if e.type == "metrics") == list(range(1, 201))  # none lost or twice
        assert [f.id for f in api.files.list().data] == [train.id]
        answer = api.chat.completions.create(model=done.fine_tuned_model, max_tokens=4, temperature=0,
                                             messages=[{"role": "user", "content": "What is the symbol for tin?"}])
        assert answer.usage.completion_tokens >= 1
    finally:
        server.terminate()
        server.wait(timeout=30)


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_sigkill_mid_batch_then_restart_answers_each_request_once(tmp_path, tiny_model_dir):
    """A batch's answers are appended as they finish: a server killed mid-batch loses none of them, and the next
    server answers only the rest (a line the kill tore is answered again)."""
    import json

    home, port = tmp_path / "home", free_port()
    server = start_server(home, tiny_model_dir, port)
    key = create_key(home)
    api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": f"q {i}"}],
                      "max_tokens": 5 + 5 * i, "temperature": 0}} for i in range(40)]  # finishing one by one
    upload = api.files.create(file=("batch.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                              purpose="batch")
    batch = api.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    partial = home / "batches" / batch.id / "output.jsonl"
    wait_for(lambda: partial.is_file() and partial.read_bytes().count(b"\n") >= 3, every=0.005)
    server.send_signal(signal.SIGKILL)
    server.wait()
    before = partial.read_bytes()
    kept = [json.loads(line) for line in before[: before.rfind(b"\n") + 1].splitlines()]
    assert 3 <= len(kept) < 40, "the server must really have been killed mid-batch"

    server = start_server(home, tiny_model_dir, port)
    try:
        done = wait_for(lambda: (b := api.batches.retrieve(batch.id)).status in {"completed", "failed"} and b)
        assert done.status == "completed" and done.request_counts.completed == 40
        answers = [json.loads(line) for line in api.files.content(done.output_file_id).text.splitlines()]
        assert sorted(a["custom_id"] for a in answers) == sorted(r["custom_id"] for r in rows)  # each once
        assert answers[: len(kept)] == kept  # answered before the kill: kept as written, not answered again
    finally:
        server.terminate()
        server.wait(timeout=30)
