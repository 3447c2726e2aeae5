"""A full disk under the registry's database: a write is answered 507 (never 500) with what to do, nothing
committed is lost, and once space returns the same request succeeds (HOME on a real 4 MiB tmpfs). A full disk
under a training job: the job fails as insufficient_storage, and the next one runs once space returns."""
import sqlite3

import pytest
from fastapi.testclient import TestClient

from tests.disk import fill, small_disk
from tests.serve.server import write_chat_file
from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


def test_a_database_write_on_a_full_disk_is_a_507_and_the_server_recovers(tmp_path, tiny_model_dir):
    with small_disk(tmp_path / "home", "4m") as home:
        app = create_app(ServeSettings(home=home, bases=[str(tiny_model_dir)], run_jobs=False))
        with TestClient(app) as api:
            api.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db)[1]}"
            rows = write_chat_file(tmp_path / "t.jsonl").read_bytes()
            kept = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", rows)})
            assert kept.status_code == 200, kept.text
            assert app.state.file_checks.wait(kept.json()["id"], 60)
            job = {"model": tiny_model_dir.name, "training_file": kept.json()["id"]}

            filler = fill(home)
            refused = api.post("/v1/fine_tuning/jobs", json=job)  # a registry write: the job's row and event
            assert refused.status_code == 507, refused.text
            error = refused.json()["error"]
            assert error["code"] == "insufficient_storage" and "disk space" in error["message"]
            assert api.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing half-written
            assert api.get("/health").status_code == 200
            assert api.get(f"/v1/files/{kept.json()['id']}/content").content == rows  # committed before: intact

            filler.unlink()  # space returns: the same request succeeds, on the same connection
            created = api.post("/v1/fine_tuning/jobs", json=job)
            assert created.status_code == 200, created.text
            assert [j["id"] for j in api.get("/v1/fine_tuning/jobs").json()["data"]] == [created.json()["id"]]
        check = sqlite3.connect(home / "tunesmith.sqlite")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert check.execute("SELECT count(*) FROM files").fetchone()[0] == 1
        check.close()


def test_other_storage_errors_stay_500s(tmp_path, tiny_model_dir, monkeypatch):
    import errno

    from tunesmith.registry import files

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files, "list_files", failing)
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.get("/v1/files", headers={"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"})
        assert response.status_code == 500 and "OSError" in response.json()["error"]["message"]


@pytest.mark.slow  # 38 s: two jobs train in their own processes
def test_a_job_whose_disk_fills_while_it_trains_fails_saying_so_and_the_next_job_runs(tmp_path, tiny_model_dir):
    """HOME/jobs on a real 16 MiB tmpfs (the registry on the ordinary disk), filled once the job's first
    checkpoint is written: the job fails with insufficient_storage and a message about disk space, not a
    traceback tail; once space returns the next job on the same file succeeds."""
    import time

    home = tmp_path / "home"
    with small_disk(home / "jobs", "16m") as jobs_dir:
        app = create_app(ServeSettings(home=home, bases=[str(tiny_model_dir)], checkpoint_every=5, poll_seconds=0.1))
        with TestClient(app) as api:
            api.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db)[1]}"
            rows = write_chat_file(tmp_path / "t.jsonl").read_bytes()
            file_id = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", rows)}).json()["id"]

            def finished(job_id: str, timeout: float = 240) -> dict:
                deadline = time.time() + timeout
                while time.time() < deadline:
                    job = api.get(f"/v1/fine_tuning/jobs/{job_id}").json()
                    if job["status"] in ("succeeded", "failed", "cancelled"):
                        return job
                    time.sleep(0.1)
                raise TimeoutError(job)

            long = api.post("/v1/fine_tuning/jobs", json={"model": tiny_model_dir.name, "training_file": file_id,
                                                          "hyperparameters": {"n_epochs": 50, "batch_size": 1}})
            assert long.status_code == 200, long.text
            deadline = time.time() + 240
            while not list(jobs_dir.glob(f"{long.json()['id']}/run/checkpoints/step-*/state.json")):
                assert time.time() < deadline and api.get(f"/v1/fine_tuning/jobs/{long.json()['id']}").json()[
                    "status"] in ("validating_files", "queued", "running")
                time.sleep(0.02)
            filler = fill(jobs_dir)
            failed = finished(long.json()["id"])
            assert failed["status"] == "failed", failed
            assert failed["error"]["code"] == "insufficient_storage" and "disk space" in failed["error"]["message"], failed

            filler.unlink()
            again = api.post("/v1/fine_tuning/jobs", json={"model": tiny_model_dir.name, "training_file": file_id,
                                                           "hyperparameters": {"n_epochs": 1}})
            assert again.status_code == 200, again.text
            assert finished(again.json()["id"])["status"] == "succeeded"
