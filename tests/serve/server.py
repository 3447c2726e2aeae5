"""Start `tunesmith serve` as a real process on a free 127.0.0.1 port, for end-to-end tests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
FACTS = [("gold", "Au"), ("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("oxygen", "O"),
         ("iron", "Fe"), ("silver", "Ag"), ("copper", "Cu"), ("tin", "Sn"), ("lead", "Pb")]


def write_chat_file(path: Path, facts=FACTS) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is the symbol for {n}?"},
                          {"role": "assistant", "content": f"The symbol for {n} is {s}."}]} for n, s in facts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunesmith.cli", *args], env=env, cwd=REPO, **kwargs)


def start_server(home: Path, base: Path, port: int, *extra: str, timeout: float = 180) -> subprocess.Popen:
    # 180 s: importing the app alone took 18 s at load 7 on 2 cores, and a start was seen past 60 s
    log = open(home.parent / f"server-{port}.log", "ab")
    process = cli("serve", "--home", str(home), "--base", str(base), "--port", str(port), *extra,
                  stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, (home.parent / f"server-{port}.log").read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError("server did not start")


@contextmanager
def served(home: Path, base: Path, *extra: str):
    """`tunesmith serve` on a free port for the length of the block; yields its root URL."""
    port = free_port()
    process = start_server(home, base, port, *extra)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def upload_file(client, path: Path) -> str:
    """POST /v1/files (purpose fine-tune) through a client that carries its key; the new file's id."""
    response = client.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def create_key(home: Path) -> str:
    """Through the real command: the key is the last line it prints."""
    done = cli("keys", "create", "--home", str(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = done.communicate(timeout=60)[0]
    assert done.returncode == 0
    return out.strip().splitlines()[-1]


def wait_for(predicate, timeout: float = 120, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")
