"""A first pass over a data file, one line at a time, before anything loads it whole.

The loaders (formats.py, labels.py, preference.py) read a file into memory and parse every row, which is
right for a file someone meant to write. An uploaded file may be anything: one 500 MB line, bytes that are
not UTF-8, JSON nested a million levels deep. This pass reads at most `max_line_bytes + 1` bytes at a time,
so memory stays bounded whatever the file holds, and reports each such line by number and reason; the
full data check runs only on a file that passes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from tunesmith.data.formats import NESTED_TOO_DEEPLY, RowError, loads_row

MAX_LINE_BYTES = 8 * 1024 * 1024  # one training row; a chat of 100k tokens is well under this (serve: max_row_bytes)
MAX_REPORTED = 100  # a wholly broken file is not worth reporting line by line past this


def screen_lines(path: Path, name: str, max_line_bytes: int = MAX_LINE_BYTES) -> list[RowError]:
    """Lines over `max_line_bytes`, not UTF-8, or (JSONL) nested past the parser's limit; [] when none is."""
    errors: list[RowError] = []
    jsonl = path.suffix != ".txt"
    with open(path, "rb") as handle:
        number = 0
        while len(errors) < MAX_REPORTED and (line := handle.readline(max_line_bytes + 1)):
            number += 1
            if len(line) > max_line_bytes:
                size = len(line) + skip_rest_of_line(handle)[0]
                errors.append(RowError(name, number, "", f"line is {size} bytes, over the limit of {max_line_bytes} "
                                       "bytes per row", "split the example, or shorten it"))
                continue
            problem = line_problem(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line, jsonl)
            if problem is not None:
                errors.append(RowError(name, number, "", *problem))
    return errors


def blank_lines(path: Path, target: Path, numbers: set[int], max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Copy `path` to `target` with the lines `numbers` emptied (line numbers kept): the loaders can then check
    the rest of a file whose screened lines they must not read."""
    with open(path, "rb") as source, open(target, "wb") as copy:
        number = 0
        while line := source.readline(max_line_bytes + 1):
            number += 1
            if number in numbers:
                ended = line.endswith(b"\n") or skip_rest_of_line(source)[1]
                copy.write(b"\n" if ended else b"")
            else:
                copy.write(line)


def line_problem(line: bytes, jsonl: bool) -> tuple[str, str] | None:
    """(what is wrong, what to do) for one line, or None; ordinary JSON errors are left to the loaders."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return (f"not valid UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1})",
                "re-save the file as UTF-8")
    if jsonl and text.strip():
        try:
            loads_row(text)
        except json.JSONDecodeError as error:
            if error.msg == NESTED_TOO_DEEPLY:
                return f"invalid JSON: {error.msg}", "write each row as a flat object such as {\"messages\": [...]}"
    return None


def skip_rest_of_line(handle: BinaryIO, chunk: int = 1 << 20) -> tuple[int, bool]:
    """Read past the end of the current line without holding it: (bytes skipped, whether a newline ended it)."""
    skipped = 0
    while part := handle.readline(chunk):
        skipped += len(part)
        if part.endswith(b"\n"):
            return skipped, True
    return skipped, False
