"""Malformed uploads: lines the screen refuses get a 400 naming each, rows the full data check (run after the
upload is answered) refuses make the file's status `error` with the row errors, and a job on it a 400; never a
500; staging files never outlive the request."""
import errno
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.serve.server import write_chat_file
from tunesmith.registry import files, keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], max_upload_bytes=1 << 20,
                             run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db)[1]}"
        yield client


def upload(api, content: bytes, name: str = "train.jsonl"):
    return api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, content)})


def stored(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "home" / "files").glob("*")) if (tmp_path / "home" / "files").exists() else []


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}).encode()


@pytest.mark.parametrize("bad, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"messages": [' * 5000 + b"]}" * 5000, "nested too deeply"),
    (b'{"text": "caf\xe9"}', "not valid UTF-8"),
])
def test_bad_line_is_a_400_with_its_line_and_no_file_is_left(api, tmp_path, bad, reason):
    for name in ("train.jsonl", "rows.txt"):
        if name.endswith(".txt") and reason == "nested too deeply":
            continue  # a text file's lines are documents, not JSON
        response = upload(api, GOOD + b"\n" + bad + b"\n" + GOOD + b"\n", name)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_file" and "line 2" in error["message"] and reason in error["message"]
        assert stored(tmp_path) == []


def test_a_line_over_the_row_limit_is_reported_without_loading_it(api, tmp_path):
    api.app.state.settings.max_row_bytes = 1000
    huge = GOOD.replace(b"hello", b"a" * 5000)
    response = upload(api, GOOD + b"\n" + GOOD + b"\n" + huge + b"\n" + GOOD + b"\n")
    assert response.status_code == 400
    assert "line 3" in response.json()["error"]["message"] and "over the limit of 1000 bytes" in response.json()["error"]["message"]
    assert stored(tmp_path) == []


def test_a_full_disk_is_a_507_and_leaves_no_staging_file(api, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "add_file", full)
    response = upload(api, write_chat_file(tmp_path / "t.jsonl").read_bytes())
    assert response.status_code == 507 and response.json()["error"]["code"] == "insufficient_storage"
    assert stored(tmp_path) == []


def test_an_unexpected_failure_after_staging_leaves_no_file(api, tmp_path, monkeypatch):
    from tunesmith.serve.routes import files as files_route

    def broken(*args, **kwargs):
        raise RuntimeError("digest crashed")

    monkeypatch.setattr(files_route, "file_sha256", broken)
    with pytest.raises(RuntimeError):  # TestClient re-raises what the server would answer 500 to
        upload(api, write_chat_file(tmp_path / "t.jsonl").read_bytes())
    assert stored(tmp_path) == []


def checked(api, file_id: str) -> dict:
    """The file object once its data check (run after the upload was answered) has finished."""
    assert api.app.state.file_checks.wait(file_id, 60)
    return api.get(f"/v1/files/{file_id}").json()


def test_the_full_check_runs_after_the_upload_and_a_job_waits_for_it(api, tmp_path):
    response = upload(api, write_chat_file(tmp_path / "t.jsonl").read_bytes())
    assert response.status_code == 200 and response.json()["status"] in ("uploaded", "processed")
    file_id = response.json()["id"]
    job = api.post("/v1/fine_tuning/jobs", json={"model": Path(api.app.state.settings.bases[0]).name,
                                                 "training_file": file_id})
    assert job.status_code == 200, job.text  # created only once the check passed
    final = checked(api, file_id)
    assert final["status"] == "processed" and final["status_details"] is None
    report = api.get(f"/ui/api/files/{file_id}/check").json()["report"]
    assert report["files"][0]["valid_rows"] == 10 and report["pii_policy"]["policy"] == "refuse"


def test_rows_the_check_refuses_make_the_file_an_error_and_a_job_on_it_a_400(api, tmp_path):
    bad = json.dumps({"messages": [{"role": "user"}]}).encode()
    response = upload(api, GOOD + b"\n" + bad + b"\n" + GOOD + b"\n")
    assert response.status_code == 200, response.text
    final = checked(api, response.json()["id"])
    assert final["status"] == "error" and "line 2" in final["status_details"], final
    job = api.post("/v1/fine_tuning/jobs", json={"model": Path(api.app.state.settings.bases[0]).name,
                                                 "training_file": final["id"]})
    assert job.status_code == 400 and job.json()["error"]["code"] == "invalid_file"
    assert "line 2" in job.json()["error"]["message"] and job.json()["error"]["param"] == "training_file"


def test_a_crashing_check_makes_the_file_an_error_not_a_file_stuck_uploaded(api, tmp_path, monkeypatch):
    from tunesmith.serve import file_checks

    def broken(*args, **kwargs):
        raise RuntimeError("checker crashed")

    monkeypatch.setattr(file_checks, "check_training_file", broken)
    response = upload(api, write_chat_file(tmp_path / "t.jsonl").read_bytes())
    assert response.status_code == 200
    final = checked(api, response.json()["id"])
    assert final["status"] == "error" and "checker crashed" in final["status_details"]


def test_a_check_a_stopped_server_left_unfinished_runs_at_startup(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False)
    app = create_app(settings)
    owner = keys.create_key(app.state.db)[0]
    settings.files_dir.mkdir(parents=True)
    file_id = files.new_file_id()
    files.blob_path(settings.files_dir, file_id, "t.jsonl").write_bytes(write_chat_file(tmp_path / "t.jsonl").read_bytes())
    files.add_file(app.state.db, file_id, owner, "t.jsonl", "fine-tune", 1, None, status="uploaded")
    with TestClient(app):
        assert app.state.file_checks.wait(file_id, 60)
        assert files.get_file(app.state.db, owner, file_id).status == "processed"


def test_staging_files_left_by_a_killed_server_are_removed_at_startup(tmp_path, tiny_model_dir):
    files_dir = tmp_path / "home" / "files"
    files_dir.mkdir(parents=True)
    stored = files_dir / "file-0123456789abcdef01234567.jsonl"
    stored.write_text("{}\n")
    for name in (".part-file-0123456789abcdef01234568.jsonl", ".redacted-.part-x.jsonl", ".check-abc.jsonl"):
        (files_dir / name).write_text("half an upload")
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app):
        assert [p.name for p in files_dir.iterdir()] == [stored.name]


@pytest.fixture
def tiny_disk(tmp_path):
    """HOME/files on a real 256 KiB tmpfs (the database stays on the ordinary disk); skipped where mounting is
    not permitted (not root, or no CAP_SYS_ADMIN in this container)."""
    import shutil
    import subprocess

    files_dir = tmp_path / "home" / "files"
    files_dir.mkdir(parents=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the real disk-full test needs a tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(files_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield files_dir
    finally:
        subprocess.run(["umount", str(files_dir)], check=False)


def test_an_upload_that_fills_a_real_disk_is_a_507_leaves_nothing_and_the_server_recovers(tiny_disk, tmp_path,
                                                                                             tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], max_upload_bytes=1 << 20,
                             run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db)[1]}"
        small = write_chat_file(tmp_path / "small.jsonl").read_bytes()
        first = upload(api, small)
        assert first.status_code == 200, first.text
        big = (GOOD + b"\n") * (400_000 // len(GOOD))  # 400 KB of good rows on a 256 KiB disk
        response = upload(api, big)
        assert response.status_code == 507, response.text
        assert response.json()["error"]["code"] == "insufficient_storage"
        assert stored(tmp_path) == [f"{first.json()['id']}.jsonl"]  # no partial file, the earlier one kept
        assert api.get(f"/v1/files/{first.json()['id']}/content").content == small
        assert api.get("/health").status_code == 200
        again = upload(api, small)  # the failed upload's staging file was removed: its space is back
        assert again.status_code == 200, again.text
        assert {f["id"] for f in api.get("/v1/files").json()["data"]} == {again.json()["id"], first.json()["id"]}
