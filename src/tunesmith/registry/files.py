"""Uploaded files: metadata rows plus content stored under a path built from our own random id only.

The uploaded filename is kept as metadata and never touches the filesystem.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now, page

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")


@dataclass
class FileRecord:
    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    report: dict | None
    sha256: str | None  # of the stored content (None for files stored before digests were kept)
    status: str = "processed"  # uploaded (the data check is running), processed, or error
    status_details: str | None = None  # why the check refused the file: its row errors by line


def new_file_id() -> str:
    return new_id("file")


def blob_path(root: Path, file_id: str, filename: str = "") -> Path:
    """Where a file's content lives: our id plus a suffix from a fixed list (the data loader reads `.txt`
    as raw text, anything else as JSONL). Refuses anything that is not one of our ids."""
    if not FILE_ID.match(file_id):
        raise ValueError(f"not a file id: {file_id!r}")
    return root / (file_id + (".txt" if filename.lower().endswith(".txt") else ".jsonl"))


def _record(row) -> FileRecord:
    data = dict(row)
    data.pop("deleted_at")
    data["report"] = json.loads(data["report"]) if data["report"] else None
    return FileRecord(**data)


def add_file(db: Database, file_id: str, owner: str, filename: str, purpose: str, size: int,
             report: dict | None, sha256: str | None = None, status: str = "processed",
             action: str = "file.uploaded", **detail) -> FileRecord:
    """`detail` goes into the audit entry (e.g. what the PII policy did); `action` names it (file.created: a file
    the server wrote, a batch's output). A file recorded as `uploaded` gets its report and final status from
    `finish_check`."""
    with db.transaction() as tx:
        tx.execute("INSERT INTO files (id, owner, filename, purpose, bytes, created_at, report, sha256, status)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (file_id, owner, filename, purpose, size, now(), json.dumps(report) if report else None, sha256,
                    status))
        audit.record(tx, owner, action, file_id, filename=filename, bytes=size, sha256=sha256, **detail)
    return get_file(db, owner, file_id)


def finish_check(db: Database, file_id: str, report: dict | None, details: str | None) -> bool:
    """Record the data check's outcome: `processed` with its report, or `error` with `details` (the row errors).
    False when the file was deleted meanwhile."""
    status = "error" if details else "processed"
    return bool(db.execute("UPDATE files SET status = ?, status_details = ?, report = ? WHERE id = ? AND deleted_at IS NULL",
                           (status, details, json.dumps(report) if report else None, file_id)))


def unchecked_files(db: Database) -> list[FileRecord]:
    """Every key's files whose data check has not finished (a server stopped while it ran), oldest first."""
    return [_record(r) for r in db.query("SELECT * FROM files WHERE status = 'uploaded' AND deleted_at IS NULL "
                                         "ORDER BY rowid")]


def get_file(db: Database, owner: str, file_id: str) -> FileRecord | None:
    row = db.query_one("SELECT * FROM files WHERE id = ? AND owner = ? AND deleted_at IS NULL", (file_id, owner))
    return _record(row) if row else None


def list_files(db: Database, owner: str, purpose: str | None = None, after: str | None = None,
               limit: int = 10000) -> tuple[list[FileRecord], bool]:
    where, params = "owner = ? AND deleted_at IS NULL", (owner,)
    if purpose is not None:
        where, params = where + " AND purpose = ?", params + (purpose,)
    rows, more = page(db, "files", where, params, after, limit)
    return [_record(r) for r in rows], more


def all_files(db: Database, owner: str | None = None) -> list[FileRecord]:
    """One key's files, or every key's (the operator's lineage and erasure), oldest first."""
    where, params = ("owner = ? AND deleted_at IS NULL", (owner,)) if owner else ("deleted_at IS NULL", ())
    return [_record(r) for r in db.query(f"SELECT * FROM files WHERE {where} ORDER BY rowid", params)]


def files_older_than(db: Database, cutoff: int) -> list[FileRecord]:
    return [_record(r) for r in db.query("SELECT * FROM files WHERE created_at < ? AND deleted_at IS NULL ORDER BY rowid",
                                         (cutoff,))]


def delete_file(db: Database, owner: str, file_id: str, actor: str | None = None, action: str = "file.deleted",
                **detail) -> bool:
    """Marks the row deleted (the caller removes the content); False when the key has no such file.

    `actor` defaults to the owner; retention and an operator's erasure act for it and say so in `action`.
    """
    with db.transaction() as tx:
        changed = tx.execute("UPDATE files SET deleted_at = ? WHERE id = ? AND owner = ? AND deleted_at IS NULL",
                             (now(), file_id, owner)).rowcount
        if changed:
            audit.record(tx, actor or owner, action, file_id, **detail)
    return bool(changed)
