"""The job worker's poll, driven by hand with a stand-in training process: one job's error does not stop the
others, cancel is honoured whatever else fails, the time limit stops a job, keys take turns at the slot."""
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from tests.serve.server import write_chat_file
from tunesmith.registry import jobs, keys
from tunesmith.serve import worker as worker_module
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.worker import MAX_STEP_ERRORS, JobWorker


@pytest.fixture
def setup(tmp_path, tiny_model_dir, monkeypatch):
    """(client, worker, new_key, create_job); training processes sleep (exit code from `exit_code`)."""
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False)
    app = create_app(settings)
    behaviour, real_popen = {"exit_code": None}, subprocess.Popen

    def fake_training(args, **kwargs):
        code = behaviour["exit_code"]
        script = "import time; time.sleep(60)" if code is None else f"raise SystemExit({code})"
        return real_popen([sys.executable, "-c", script], stdout=kwargs.get("stdout"), stderr=subprocess.STDOUT)

    monkeypatch.setattr(worker_module.subprocess, "Popen", fake_training)
    worker = JobWorker(app.state.db, settings)
    with TestClient(app) as client:
        def new_key():
            return {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}

        def create_job(headers, name="t.jsonl"):
            upload = client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                                 files={"file": (name, write_chat_file(tmp_path / name).read_bytes())}).json()
            body = {"model": tiny_model_dir.name, "training_file": upload["id"]}
            return client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()["id"]

        yield client, worker, new_key, create_job, behaviour
    if worker.current is not None:
        worker.current.process.kill()


def status(worker, job_id):
    return jobs.get_job(worker.db, job_id)


def test_one_jobs_error_neither_stops_the_others_nor_holds_the_queue(setup, monkeypatch):
    client, worker, new_key, create_job, _ = setup
    headers = new_key()
    broken, fine = create_job(headers, "broken.jsonl"), create_job(headers, "fine.jsonl")
    checked, job = worker_module.check_training_file, status(worker, broken)
    broken_path = worker.file_path(job.owner, job.training_file)

    def check(path, *args):
        if path == broken_path:
            raise OSError("disk I/O error")
        return checked(path, *args)

    monkeypatch.setattr(worker_module, "check_training_file", check)
    worker.tick()
    assert status(worker, fine).status == "running" and worker.current.job_id == fine
    assert status(worker, broken).status == "validating_files"
    for _ in range(MAX_STEP_ERRORS - 1):
        worker.tick()
    failed = status(worker, broken)
    assert failed.status == "failed" and failed.error["code"] == "worker_error" and "disk I/O error" in failed.error["message"]


def test_cancel_is_honoured_while_recording_progress_keeps_failing(setup, monkeypatch):
    client, worker, new_key, create_job, _ = setup
    headers = new_key()
    job_id = create_job(headers)
    worker.tick()
    process = worker.current.process

    def broken(current):
        raise OSError("database or disk is full")

    monkeypatch.setattr(worker, "record_progress", broken)
    worker.tick()
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=headers).json()["status"] == "cancelled"
    worker.tick()
    assert worker.current is None and process.poll() is not None


def test_a_job_over_the_time_limit_is_stopped_and_failed(setup):
    client, worker, new_key, create_job, _ = setup
    job_id = create_job(new_key())
    worker.settings.max_job_seconds = 0.5
    worker.tick()
    process = worker.current.process
    worker.tick()
    assert status(worker, job_id).status == "running"
    time.sleep(0.6)
    worker.tick()
    job = status(worker, job_id)
    assert job.status == "failed" and job.error["code"] == "time_limit_exceeded" and process.poll() is not None


def test_keys_take_turns_at_the_training_slot(setup):
    client, worker, new_key, create_job, behaviour = setup
    alice, bob = new_key(), new_key()
    first, second = create_job(alice, "a1.jsonl"), create_job(alice, "a2.jsonl")
    bobs = create_job(bob, "b1.jsonl")
    behaviour["exit_code"] = 1  # each training process ends at once (failed): the slot frees every poll
    order = []
    for _ in range(3):
        worker.tick()
        order.append(worker.current.job_id)
        worker.current.process.wait()
    assert order == [first, bobs, second]
