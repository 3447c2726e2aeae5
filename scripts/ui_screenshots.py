"""Take the README's screenshots of the web UI from a real server, driving the UI as a user would.

Run as: python scripts/ui_screenshots.py [--out docs/ui] [--base smollm2-135m-instruct] [--rows 48]

It starts `tunesmith serve` on a free port with a fresh home, uploads a sample of examples/elements (training
and validation rows) through the Files page, starts a LoRA job from the New-job form, waits until it has
succeeded (training and the quick evaluation: a few minutes for the 135M model on a 2-core CPU), and saves
files.png (the data check) and job.png (the job page down to its evaluation) under --out. Headless Debian
chromium (scripts/setup.sh installs it); nothing is fetched from the network.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
JOB_TIMEOUT_MS = 30 * 60 * 1000


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunesmith.cli", *args], env=env, cwd=REPO, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, base: str, port: int) -> subprocess.Popen:
    log = open(home.parent / "server.log", "ab")
    process = cli("serve", "--home", str(home), "--base", base, "--port", str(port), stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"the server exited: see {home.parent / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start within 2 minutes")


def sample(source: Path, rows: int, target: Path) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:rows]))
    return target


def upload(page, path: Path) -> str:
    page.set_input_files("#upload", str(path))
    expect(page.locator("#upload-status")).to_contain_text(f"uploaded {path.name} as file-", timeout=60_000)
    return page.locator("#upload-status").inner_text().split(" as ")[1]


def take(url: str, key: str, train: Path, valid: Path, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui#files")
        page.fill("#api-key", key)
        page.click("#save-key")
        train_id, valid_id = upload(page, train), upload(page, valid)
        page.locator(f"tr[data-file='{train_id}']").click()
        expect(page.locator("#file-check .preview mark").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(out / "files.png"), full_page=True)

        page.goto(f"{url}/ui#new")
        page.select_option("#job-training-file", train_id)
        page.select_option("#job-validation-file", valid_id)
        page.fill("#hp-n_epochs", "2")
        page.fill("#job-suffix", "elements")
        expect(page.locator("#estimate-time")).to_be_visible(timeout=120_000)
        page.click("#create-job")
        page.wait_for_url("**/ui#jobs/ftjob-*")
        expect(page.locator("#job-title .status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#evaluation table.evaluation")).to_be_visible()
        box = page.locator("#evaluation").bounding_box()  # down to the evaluation, not the long model card
        bottom = box["y"] + box["height"] + 16
        page.screenshot(path=str(out / "job.png"), clip={"x": 0, "y": 0, "width": 1280, "height": bottom}, full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="base model the server serves and trains")
    parser.add_argument("--rows", type=int, default=48, help="training rows sampled from examples/elements/train.jsonl")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunesmith-ui-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        done = cli("keys", "create", "--home", str(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        key = done.communicate(timeout=120)[0].strip().splitlines()[-1]
        train = sample(REPO / "examples/elements/train.jsonl", args.rows, Path(tmp) / "elements-train.jsonl")
        valid = sample(REPO / "examples/elements/valid.jsonl", max(4, args.rows // 4), Path(tmp) / "elements-valid.jsonl")
        port = free_port()
        server = start_server(home, args.base, port)
        started = time.perf_counter()
        try:
            take(f"http://127.0.0.1:{port}", key, train, valid, args.out)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"wrote {args.out / 'files.png'} and {args.out / 'job.png'} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
