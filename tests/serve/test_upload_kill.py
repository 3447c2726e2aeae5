"""SIGKILL a real `tunesmith serve` during an upload, twice: mid-body, and while the stored copy is being checked
(its `.part-` staging file on disk). A new server on the same home leaves no staging file and no half record,
answers /health, and serves the earlier file byte for byte."""
import signal
import socket
import time

import httpx

from tests.serve.server import free_port, start_server, wait_for, write_chat_file
from tunesmith.registry import keys
from tunesmith.registry.db import Database

ROW = b'{"messages": [{"role": "user", "content": "What is the symbol for gold?"}, {"role": "assistant", "content": "Au."}]}\n'
BOUNDARY = "tunesmithkilltest"


def multipart(content: bytes) -> tuple[bytes, bytes]:
    """(head, tail) around the file's bytes in a multipart body with purpose=fine-tune."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def open_upload(port: int, key: str, content: bytes) -> tuple[socket.socket, bytes]:
    """A raw connection with the request line, headers and multipart head sent; returns it and the rest to send."""
    head, tail = multipart(content)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                  f"Content-Length: {len(head) + len(content) + len(tail)}\r\n\r\n").encode() + head)
    return sock, content + tail


def assert_only(home, port, key, file_id, content):
    names = sorted(p.name for p in (home / "files").iterdir())
    assert names == [f"{file_id}.jsonl"], names  # no staging file, no unrecorded blob
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert api.get("/health").status_code == 200
    assert [f["id"] for f in api.get("/v1/files").json()["data"]] == [file_id]  # no half record
    assert api.get(f"/v1/files/{file_id}/content").content == content


def test_sigkill_during_an_upload_leaves_no_staging_file_or_record_and_keeps_earlier_files(tmp_path, tiny_model_dir):
    home, port = tmp_path / "home", free_port()
    home.mkdir(parents=True)
    key = keys.create_key(Database(home / "tunesmith.sqlite"))[1]  # in-process: one subprocess fewer to start
    server = start_server(home, tiny_model_dir, port, timeout=240)
    try:
        earlier = write_chat_file(tmp_path / "earlier.jsonl").read_bytes()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
        first = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("earlier.jsonl", earlier)})
        assert first.status_code == 200, first.text
        file_id = first.json()["id"]

        big = ROW * (24 * 1024 * 1024 // len(ROW))  # 24 MB of good rows: the check takes seconds
        sock, rest = open_upload(port, key, big)
        sock.sendall(rest[: len(rest) // 2])  # half the body, then the server dies
        time.sleep(0.5)
        server.send_signal(signal.SIGKILL)
        server.wait()
        sock.close()
        server = start_server(home, tiny_model_dir, port, timeout=240)
        assert_only(home, port, key, file_id, earlier)

        sock, rest = open_upload(port, key, big)  # the whole body: killed once the staging copy is on disk
        sock.sendall(rest)
        wait_for(lambda: any(p.name.startswith(".part-") for p in (home / "files").iterdir()), timeout=60, every=0.01)
        server.send_signal(signal.SIGKILL)
        server.wait()
        sock.close()
        assert any(p.name.startswith(".part-") for p in (home / "files").iterdir())  # the kill left one behind
        server = start_server(home, tiny_model_dir, port, timeout=240)
        assert_only(home, port, key, file_id, earlier)
    finally:
        server.kill()
        server.wait(timeout=30)
