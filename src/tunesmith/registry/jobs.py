"""Fine-tuning jobs and their state machine.

    validating_files → queued → running → succeeded | failed | cancelled
    queued/running ⇄ paused (pause, then resume → queued);   cancel from any unfinished state.

Every change is a compare-and-set inside one transaction, with an event and an audit line, so the
API and the job worker can race (cancel vs. finish) and exactly one of them wins.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Callable
from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now, page

TERMINAL = {"succeeded", "failed", "cancelled"}
TRANSITIONS = {
    "validating_files": {"queued", "failed", "cancelled"},
    "queued": {"running", "paused", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled", "paused"},
    "paused": {"queued", "cancelled"},
}


class InvalidTransition(Exception):
    def __init__(self, job_id: str, current: str, wanted: str):
        self.current, self.wanted = current, wanted
        super().__init__(f"job {job_id} is {current}; it cannot become {wanted}")


@dataclass
class Job:
    id: str
    owner: str
    created_at: int
    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict  # as asked (numbers or "auto") until the job starts, then the numbers it trains with
    suffix: str | None
    seed: int
    status: str
    fine_tuned_model: str | None
    trained_tokens: int | None
    error: dict | None
    finished_at: int | None
    metadata: dict | None
    integrations: list | None  # OpenAI's `integrations` as the client sent them (recorded, see routes/jobs.py)
    method: str  # OpenAI's method.type: supervised, dpo or reinforcement
    suite: str | None = None  # extension: the evaluation suite run after training (serve/suites.py)
    grader: dict | None = None  # a reinforcement job's grader (train/graders.py), as checked when it was created


def _job(row) -> Job:
    data = dict(row)
    for key in ("hyperparameters", "error", "metadata", "integrations", "grader"):
        data[key] = json.loads(data[key]) if data[key] else None
    return Job(**data)


def create_job(db: Database, owner: str, model: str, training_file: str, validation_file: str | None,
               hyperparameters: dict, suffix: str | None, seed: int, metadata: dict | None = None,
               integrations: list | None = None, method: str = "supervised", suite: str | None = None,
               grader: dict | None = None) -> Job:
    job_id = new_id("ftjob")
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO jobs (id, owner, created_at, model, training_file, validation_file, hyperparameters,"
            " suffix, seed, status, metadata, integrations, method, suite, grader)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'validating_files', ?, ?, ?, ?, ?)",
            (job_id, owner, now(), model, training_file, validation_file, json.dumps(hyperparameters), suffix, seed,
             json.dumps(metadata) if metadata else None, json.dumps(integrations) if integrations else None, method,
             suite, json.dumps(grader) if grader is not None else None),
        )
        insert_event(tx, job_id, f"Created fine-tuning job: {job_id}")
        audit.record(tx, owner, "job.created", job_id, model=model, training_file=training_file,
                     **({"validation_file": validation_file} if validation_file else {}),
                     **({"integrations": [i.get("type") for i in integrations]} if integrations else {}),
                     **({"suite": suite} if suite else {}))
    return get_job(db, job_id)


def get_job(db: Database, job_id: str, owner: str | None = None) -> Job | None:
    """`owner=None` is for the worker, which acts for every key; the API always passes the caller's key."""
    if owner is None:
        row = db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    else:
        row = db.query_one("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))
    return _job(row) if row else None


def list_jobs(db: Database, owner: str, after: str | None = None, limit: int = 20) -> tuple[list[Job], bool]:
    rows, more = page(db, "jobs", "owner = ?", (owner,), after, limit)
    return [_job(r) for r in rows], more


def jobs_in(db: Database, statuses: tuple[str, ...]) -> list[Job]:
    """Jobs in the given states, oldest first (the worker's queue)."""
    marks = ", ".join("?" for _ in statuses)
    return [_job(r) for r in db.query(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY rowid", statuses)]


def transition(db: Database, job_id: str, wanted: str, actor: str, message: str | None = None,
               also: Callable[[sqlite3.Connection], None] | None = None, only_from: set[str] | None = None,
               **fields) -> Job:
    """Move a job to `wanted` if its current state allows it, setting `fields` (fine_tuned_model, error, ...).

    `also(tx)` runs in the same transaction (e.g. registering the fine-tuned model on success).
    `only_from` narrows the allowed current states (resume: paused → queued, not validating_files → queued).
    """
    with db.transaction() as tx:
        row = tx.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        allowed = wanted in TRANSITIONS.get(row["status"], set()) and (only_from is None or row["status"] in only_from)
        if not allowed:
            raise InvalidTransition(job_id, row["status"], wanted)
        if wanted in TERMINAL:
            fields["finished_at"] = now()
        if "error" in fields and fields["error"] is not None:
            fields["error"] = json.dumps(fields["error"])
        assignments = ", ".join(f"{name} = ?" for name in ["status", *fields])
        tx.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (wanted, *fields.values(), job_id))
        level = "error" if wanted == "failed" else "info"
        insert_event(tx, job_id, message or f"Job {wanted.replace('_', ' ')}", level=level)
        audit.record(tx, actor, f"job.{wanted}", job_id, previous=row["status"])
        if also is not None:
            also(tx)
    return get_job(db, job_id)


def update_progress(db: Database, job_id: str, trained_tokens: int) -> None:
    db.execute("UPDATE jobs SET trained_tokens = ? WHERE id = ?", (trained_tokens, job_id))


def finished_without_model_before(db: Database, cutoff: int) -> list[Job]:
    """Failed or cancelled jobs that ended before `cutoff` (retention removes what their runs left)."""
    rows = db.query("SELECT * FROM jobs WHERE status IN ('failed', 'cancelled') AND finished_at < ? ORDER BY rowid",
                    (cutoff,))
    return [_job(r) for r in rows]


def set_hyperparameters(db: Database, job_id: str, resolved: dict) -> None:
    """Replace what the client asked ("auto" included) with the numbers the job trains with."""
    db.execute("UPDATE jobs SET hyperparameters = ? WHERE id = ?", (json.dumps(resolved), job_id))


def insert_event(tx, job_id: str, message: str, level: str = "info", type: str = "message", data: dict | None = None,
           dedupe: str | None = None) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO job_events (id, job_id, created_at, level, type, message, data, dedupe)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (new_id("ftevent"), job_id, now(), level, type, message, json.dumps(data) if data else None, dedupe),
    )


def unfinished_jobs_using(db: Database, owner: str, file_id: str) -> list[str]:
    """Ids of the key's unfinished jobs that train or validate on `file_id` (a resumed job rereads it)."""
    marks = ", ".join("?" for _ in TERMINAL)
    rows = db.query(f"SELECT id FROM jobs WHERE owner = ? AND ? IN (training_file, validation_file)"
                    f" AND status NOT IN ({marks})", (owner, file_id, *TERMINAL))
    return [r["id"] for r in rows]


WAITING_OR_RUNNING = ("validating_files", "queued", "running")


def count_waiting_or_running(db: Database, owner: str) -> int:
    """The key's jobs that hold or wait for the training slot (paused ones wait for the user, not the slot)."""
    marks = ", ".join("?" * len(WAITING_OR_RUNNING))
    row = db.query_one(f"SELECT COUNT(*) AS n FROM jobs WHERE owner = ? AND status IN ({marks})", (owner, *WAITING_OR_RUNNING))
    return row["n"]
