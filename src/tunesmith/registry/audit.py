"""Append-only audit log: who changed what (key created, file uploaded/deleted, job state changes, model deleted)."""
from __future__ import annotations

import json
import sqlite3
import time

from tunesmith.registry.db import Database


def record(connection: sqlite3.Connection, actor: str, action: str, object_id: str, **detail) -> None:
    """Write inside the caller's transaction, so the change and its audit line commit together."""
    connection.execute(
        "INSERT INTO audit_log (at, actor, action, object_id, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time(), actor, action, object_id, json.dumps(detail) if detail else None),
    )


def entries(db: Database, object_id: str | None = None) -> list[dict]:
    sql, params = "SELECT * FROM audit_log", ()
    if object_id is not None:
        sql, params = sql + " WHERE object_id = ?", (object_id,)
    rows = db.query(sql + " ORDER BY seq", params)
    return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else {}} for r in rows]
