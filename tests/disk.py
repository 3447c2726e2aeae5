"""A real full disk for tests: a small tmpfs mounted over a test directory, and a filler that takes its free space."""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(directory: Path, size: str):
    """Mount a tmpfs of `size` (mount's syntax: 4m) over `directory` for the block; skips the test where mounting
    is not permitted (not root, or no CAP_SYS_ADMIN in this container)."""
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the real disk-full test needs a tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system holding `directory` (a real ENOSPC for the next write that needs
    space); delete the returned file to give the space back."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for block in (1 << 16, 1):  # big blocks, then the last bytes one by one
            try:
                while handle.write(b"\0" * block):
                    pass
            except OSError:
                pass
    assert os.statvfs(directory).f_bavail == 0
    return filler
