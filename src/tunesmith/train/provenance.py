"""Where a run came from: the base weights' digest, the code revision, the machine and the person.

Run as: library code; `run_record.write_run_record` puts these into every run.json.

The base model's digest covers the bytes of its resolved weights (every *.safetensors file of the
directory `resolve_model_dir` returns), so two runs on "smollm2-135m-instruct" are shown to share a base
only when the dequantized weights are the same bytes. Hashing 540 MB takes a few seconds, so each file's
digest is cached under the tunesmith cache keyed by path, size and modification time.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

import tunesmith
from tunesmith.data.hashing import file_sha256
from tunesmith.models.cpu import cpuinfo_field
from tunesmith.models.resolve import cache_root, resolve_model_dir

DIGEST_CACHE = "weights_sha256.json"
PACKAGE_DIR = Path(tunesmith.__file__).resolve().parent


def base_weights_sha256(ref: str) -> str:
    """SHA-256 over the `name sha256` lines of the model's safetensors files, in name order."""
    directory = resolve_model_dir(ref)
    files = sorted(directory.glob("*.safetensors"))
    lines = "".join(f"{path.name} {cached_file_sha256(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def cached_file_sha256(path: Path) -> str:
    """A file's SHA-256, reused while its size and modification time are unchanged."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_root() / DIGEST_CACHE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    if key not in cache:
        cache = {k: v for k, v in cache.items() if Path(k.split("|")[0]).exists()}  # forget deleted files
        cache[key] = file_sha256(path)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        staging = cache_file.with_name(f".{DIGEST_CACHE}.{os.getpid()}")
        staging.write_text(json.dumps(cache, indent=1))
        os.replace(staging, cache_file)  # a concurrent run loses at most its own entry
    return cache[key]


def code_revision() -> str | None:
    """The git commit of the tunesmith source (`+dirty` when it has uncommitted changes); None outside a checkout."""
    try:
        head = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(PACKAGE_DIR), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine(world_size: int) -> dict:
    """CPU model and count, accelerators, processes in the run, and the software that ran it."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus, "world_size": world_size,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def os_user() -> str:
    """`os:` and the login name (the uid where there is none): the form the registry's audit log uses."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"os:uid-{os.getuid()}"
