"""SHA-256 of a file's bytes: pins which data a run trained on and which suite and items an evaluation read.

Run as: library code; training's run.json and the evaluation report record these digests.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
