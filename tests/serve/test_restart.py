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
