"""The hash chain that makes the audit log tamper-evident, and the migration that adds it to old databases.

Each entry stores `prev_hash` (the previous entry's `hash`; 64 zeros for the first) and
`hash = SHA-256(canonical JSON of at, actor, action, object_id, detail, outcome, prev_hash)`.
Editing an entry changes its hash; deleting or moving one breaks the next entry's link. `seq` stays out
of the hash so that a renumbered entry still matches its own hash and shows up as moved, not as edited;
AUTOINCREMENT never reuses a seq, so a gap means deleted entries. Rewriting every
hash after an edit is possible for someone who can write the file, so `audit export` prints the head
(last seq and hash) for the auditor to keep elsewhere; `verify_chain(..., head=...)` checks against it.
This module imports nothing from the registry, so `db.py` can run the migration when it opens a file.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time

GENESIS = "0" * 64
HASHED_FIELDS = ("at", "actor", "action", "object_id", "detail", "outcome")
# Columns added after the first release; (name, declaration) in the order ALTER TABLE adds them.
ADDED_COLUMNS = (("outcome", "TEXT NOT NULL DEFAULT 'ok'"), ("prev_hash", "TEXT"), ("hash", "TEXT"))


def entry_hash(fields: dict, prev_hash: str) -> str:
    """SHA-256 over sorted-key, separator-free JSON: one byte string per entry, whatever wrote it."""
    payload = {name: fields[name] for name in HASHED_FIELDS} | {"prev_hash": prev_hash}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def last_hash(connection: sqlite3.Connection) -> str:
    row = connection.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return row[0] if row and row[0] else GENESIS


def migrate_audit_log(connection: sqlite3.Connection) -> int:
    """Add the chain columns to a database made before them and seal its entries; returns entries sealed.

    The old entries were not protected while they had no hash: sealing records them as they are now, and
    an `audit.chain_sealed` entry says when, so a verifier knows where the guarantee starts.
    """
    if not _missing_columns(connection):
        return 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        for name, declaration in _missing_columns(connection):  # again under the lock: another process may have won
            connection.execute(f"ALTER TABLE audit_log ADD COLUMN {name} {declaration}")
        sealed = _seal_unhashed(connection)
        if sealed:
            connection.execute("INSERT INTO audit_log (at, actor, action, object_id, detail) VALUES (?, ?, ?, ?, ?)",
                               (time.time(), "tunesmith", "audit.chain_sealed", "audit_log", json.dumps({"entries": sealed})))
            _seal_unhashed(connection)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return sealed


def _missing_columns(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    present = {row[1] for row in connection.execute("PRAGMA table_info(audit_log)")}
    return [(name, declaration) for name, declaration in ADDED_COLUMNS if name not in present]


def _seal_unhashed(connection: sqlite3.Connection) -> int:
    """Chain every entry that has no hash yet, in seq order, onto the entry before it."""
    columns = ", ".join(HASHED_FIELDS)
    rows = connection.execute(f"SELECT seq, {columns} FROM audit_log WHERE hash IS NULL ORDER BY seq").fetchall()
    if not rows:
        return 0
    before = connection.execute("SELECT hash FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                                (rows[0][0],)).fetchone()
    previous = before[0] if before and before[0] else GENESIS
    for seq, *values in rows:
        digest = entry_hash(dict(zip(HASHED_FIELDS, values)), previous)
        connection.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, digest, seq))
        previous = digest
    return len(rows)
