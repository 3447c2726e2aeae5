"""Two models compared on one suite (the web UI's models page): one row per comparison, its report kept with it,
so a report is still there after the server restarts.

A comparison that was running when its server stopped cannot finish (its thread died with the process); the
next server marks it failed and says to run it again (`fail_interrupted`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now

INTERRUPTED = "the server stopped while this comparison ran; run it again"


@dataclass
class Comparison:
    id: str
    owner: str
    created_at: int
    a: str  # the baseline: its answers are the report's "before"
    b: str  # the candidate: "after"
    suite: str
    limit: int | None  # the first N items of each task; None = all
    status: str  # running, succeeded or failed
    report: dict | None
    error: str | None
    finished_at: int | None

    def to_json(self, with_report: bool = True) -> dict:
        fields = {k: v for k, v in asdict(self).items() if k != "owner" and (with_report or k != "report")}
        if not with_report:
            fields["passed"] = self.report.get("passed") if self.report else None
        return {"object": "comparison", **fields}


class ComparisonRunning(Exception):
    """Another comparison is still running; its id is the message."""


def _record(row) -> Comparison:
    data = dict(row)
    data["limit"] = data.pop("item_limit")
    data["report"] = json.loads(data["report"]) if data["report"] else None
    return Comparison(**data)


def start_comparison(db: Database, owner: str, a: str, b: str, suite: str, limit: int | None) -> Comparison:
    """A new running comparison, or ComparisonRunning: the models load into the server, one runs at a time."""
    comparison_id = new_id("cmp")
    with db.transaction() as tx:
        running = tx.execute("SELECT id FROM comparisons WHERE status = 'running' LIMIT 1").fetchone()
        if running is not None:
            raise ComparisonRunning(running["id"])
        tx.execute("INSERT INTO comparisons (id, owner, created_at, a, b, suite, item_limit, status)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 'running')", (comparison_id, owner, now(), a, b, suite, limit))
        audit.record(tx, owner, "comparison.started", comparison_id, a=a, b=b, suite=suite, limit=limit)
    return get_comparison(db, owner, comparison_id)


def finish_comparison(db: Database, comparison_id: str, report: dict | None = None, error: str | None = None) -> None:
    """Succeeded with its report, or failed with the error (exactly one of the two)."""
    status = "succeeded" if error is None else "failed"
    db.execute("UPDATE comparisons SET status = ?, report = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'running'",
               (status, json.dumps(report) if report is not None else None, error, now(), comparison_id))


def get_comparison(db: Database, owner: str, comparison_id: str) -> Comparison | None:
    row = db.query_one("SELECT * FROM comparisons WHERE id = ? AND owner = ?", (comparison_id, owner))
    return _record(row) if row else None


def list_comparisons(db: Database, owner: str, limit: int = 50) -> list[Comparison]:
    """The key's comparisons, newest first."""
    rows = db.query("SELECT * FROM comparisons WHERE owner = ? ORDER BY rowid DESC LIMIT ?", (owner, limit))
    return [_record(r) for r in rows]


def fail_interrupted(db: Database) -> int:
    """Marks comparisons left running by a stopped server failed; returns how many."""
    return db.execute("UPDATE comparisons SET status = 'failed', error = ?, finished_at = ? WHERE status = 'running'",
                      (INTERRUPTED, now()))
