"""Batches (OpenAI's Batch API): a file of requests answered in the background into an output file.

Status moves validating → in_progress → finalizing → completed, or to failed (the input file does not hold up),
cancelling → cancelled (by the user) or expired (not done within its completion window); each move is stamped
(`in_progress_at`, ...) and audited. Counts of answered requests are kept as they come in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now, page

COMPLETION_WINDOW_SECONDS = {"24h": 24 * 3600}  # the only window OpenAI offers
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
STAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")
STAMPED = {"in_progress": "in_progress_at", "finalizing": "finalizing_at", "completed": "completed_at",
           "failed": "failed_at", "expired": "expired_at", "cancelling": "cancelling_at", "cancelled": "cancelled_at"}


@dataclass
class Batch:
    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    stamps: dict[str, int] = field(default_factory=dict)  # in_progress_at, ... as reached
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict] | None = None  # why validation failed: {code, message, param, line}
    total: int = 0
    completed: int = 0
    failed: int = 0
    metadata: dict | None = None


def _batch(row) -> Batch:
    data = dict(row)
    for name in ("stamps", "errors", "metadata"):
        data[name] = json.loads(data[name]) if data[name] else ({} if name == "stamps" else None)
    return Batch(**data)


def create_batch(db: Database, owner: str, endpoint: str, input_file_id: str, completion_window: str,
                 metadata: dict | None) -> Batch:
    batch_id, created = new_id("batch"), now()
    with db.transaction() as tx:
        tx.execute("INSERT INTO batches (id, owner, endpoint, input_file_id, completion_window, status, created_at,"
                   " expires_at, stamps, metadata) VALUES (?, ?, ?, ?, ?, 'validating', ?, ?, '{}', ?)",
                   (batch_id, owner, endpoint, input_file_id, completion_window, created,
                    created + COMPLETION_WINDOW_SECONDS[completion_window], json.dumps(metadata) if metadata else None))
        audit.record(tx, owner, "batch.created", batch_id, endpoint=endpoint, input_file_id=input_file_id)
    return get_batch(db, owner, batch_id)


def get_batch(db: Database, owner: str, batch_id: str) -> Batch | None:
    row = db.query_one("SELECT * FROM batches WHERE id = ? AND owner = ?", (batch_id, owner))
    return _batch(row) if row else None


def list_batches(db: Database, owner: str, after: str | None, limit: int) -> tuple[list[Batch], bool]:
    rows, more = page(db, "batches", "owner = ?", (owner,), after, limit)
    return [_batch(r) for r in rows], more


def unfinished_batches(db: Database) -> list[Batch]:
    """Every key's batches still to run or finish, oldest first (a restarted server picks them up)."""
    marks = ", ".join("?" * len(UNFINISHED))
    return [_batch(r) for r in db.query(f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY rowid", UNFINISHED)]


def unfinished_batches_using(db: Database, owner: str, file_id: str) -> list[str]:
    marks = ", ".join("?" * len(UNFINISHED))
    rows = db.query(f"SELECT id FROM batches WHERE owner = ? AND input_file_id = ? AND status IN ({marks})",
                    (owner, file_id, *UNFINISHED))
    return [r["id"] for r in rows]


def move(db: Database, batch: Batch, status: str, *, only_from: tuple[str, ...] = UNFINISHED, **changes) -> bool:
    """Set the batch's status (stamping when it was reached) and any of total / output_file_id / error_file_id /
    errors, unless it has meanwhile left `only_from` (a cancel racing the runner). Audited."""
    stamps = batch.stamps | ({STAMPED[status]: now()} if status in STAMPED else {})
    columns = {"status": status, "stamps": json.dumps(stamps)}
    columns.update({name: json.dumps(value) if name == "errors" else value for name, value in changes.items()})
    assignments = ", ".join(f"{name} = ?" for name in columns)
    marks = ", ".join("?" * len(only_from))
    with db.transaction() as tx:
        changed = tx.execute(f"UPDATE batches SET {assignments} WHERE id = ? AND status IN ({marks})",
                             (*columns.values(), batch.id, *only_from)).rowcount
        if changed:
            audit.record(tx, batch.owner, f"batch.{status}", batch.id,
                         **{name: value for name, value in changes.items() if name != "errors"})
    if changed:
        batch.status, batch.stamps = status, stamps
        for name, value in changes.items():
            setattr(batch, name, value)
    return bool(changed)


def attach_file(db: Database, batch: Batch, kind: str, file_id: str) -> None:
    """Name the batch's output_file_id or error_file_id before that file is recorded (finishing twice makes no copy)."""
    assert kind in ("output_file_id", "error_file_id")
    db.execute(f"UPDATE batches SET {kind} = ? WHERE id = ?", (file_id, batch.id))
    setattr(batch, kind, file_id)


def count_answers(db: Database, batch: Batch, completed: int, failed: int) -> None:
    """Counts only grow: updates that arrive out of order (from concurrent requests' threads) keep the largest."""
    db.execute("UPDATE batches SET completed = MAX(completed, ?), failed = MAX(failed, ?) WHERE id = ?",
               (completed, failed, batch.id))


