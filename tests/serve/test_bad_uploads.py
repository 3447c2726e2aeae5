"""Malformed uploads get a 400 naming each bad line, never a 500; staging files never outlive the request."""
import errno
import json

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
        raise RuntimeError("checker crashed")

    monkeypatch.setattr(files_route, "check_training_file", broken)
    with pytest.raises(RuntimeError):  # TestClient re-raises what the server would answer 500 to
        upload(api, write_chat_file(tmp_path / "t.jsonl").read_bytes())
    assert stored(tmp_path) == []


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
