"""A job's event stream (state changes, per-step metrics) and its checkpoints, as the API lists them."""
from __future__ import annotations

import json
from dataclasses import dataclass

from tunesmith.registry.db import Database, new_id, now, page
from tunesmith.registry.jobs import insert_event


@dataclass
class Event:
    id: str
    job_id: str
    created_at: int
    level: str
    type: str
    message: str
    data: dict | None


@dataclass
class Checkpoint:
    id: str
    job_id: str
    created_at: int
    step: int
    metrics: dict
    model_id: str


def add_event(db: Database, job_id: str, message: str, level: str = "info", type: str = "message",
              data: dict | None = None, dedupe: str | None = None) -> None:
    """`dedupe` makes the call idempotent (a step's metrics are recorded once even if re-read after a restart)."""
    with db.transaction() as tx:
        insert_event(tx, job_id, message, level, type, data, dedupe)


def list_events(db: Database, job_id: str, after: str | None = None, limit: int = 20) -> tuple[list[Event], bool]:
    """Newest first, as OpenAI lists them."""
    rows, more = page(db, "job_events", "job_id = ?", (job_id,), after, limit)
    events = [Event(**{k: r[k] for k in ("id", "job_id", "created_at", "level", "type", "message")},
                    data=json.loads(r["data"]) if r["data"] else None) for r in rows]
    return events, more


def add_checkpoint(db: Database, job_id: str, step: int, metrics: dict, model_id: str) -> bool:
    """Record a saved checkpoint once; returns False when this step was already recorded."""
    with db.transaction() as tx:
        added = tx.execute(
            "INSERT OR IGNORE INTO job_checkpoints (id, job_id, created_at, step, metrics, model_id) VALUES (?, ?, ?, ?, ?, ?)",
            (new_id("ftckpt"), job_id, now(), step, json.dumps(metrics), model_id),
        ).rowcount
        if added:
            insert_event(tx, job_id, f"Checkpoint created at step {step}", data={"step": step})
    return bool(added)


def list_checkpoints(db: Database, job_id: str, after: str | None = None, limit: int = 10) -> tuple[list[Checkpoint], bool]:
    rows, more = page(db, "job_checkpoints", "job_id = ?", (job_id,), after, limit)
    return [Checkpoint(**{**dict(r), "metrics": json.loads(r["metrics"])}) for r in rows], more
