"""Append-only, hash-chained audit log: who changed what, when, and with what outcome.

An entry holds the time, the actor (an API key id, or `os:USER` for a command run on the machine), the
action (`key.created`, `file.deleted`, `job.cancelled`, ...), the object id, the outcome (`ok`, or what
went wrong) and a JSON detail with related ids. `audit_chain.py` says how entries are chained;
`verify_chain` finds edited, deleted and moved entries; `export` writes entries for an auditor.
"""
from __future__ import annotations

import csv
import datetime
import getpass
import io
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

from tunesmith.registry.audit_chain import GENESIS, entry_hash, last_hash
from tunesmith.registry.db import Database

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
MICROSECOND = datetime.timedelta(microseconds=1)
EXPORT_COLUMNS = ("seq", "time", "actor", "action", "object_id", "outcome", "detail", "prev_hash", "hash")


@dataclass
class AuditProblem:
    seq: int  # the entry where the chain breaks
    kind: Literal["edited", "deleted", "moved", "unsealed"]
    message: str

    def __str__(self) -> str:
        return f"audit_log entry {self.seq}: {self.kind}: {self.message}"


def record(connection: sqlite3.Connection, actor: str, action: str, object_id: str, outcome: str = "ok",
           **detail) -> None:
    """Write inside the caller's transaction, so the change and its audit line commit together.

    The transaction's write lock also orders appends: no other writer can slip in between reading the
    last hash and inserting the entry that links to it.
    """
    fields = {"at": time.time(), "actor": actor, "action": action, "object_id": object_id,
              "detail": json.dumps(detail, sort_keys=True) if detail else None, "outcome": outcome}
    previous = last_hash(connection)
    connection.execute(
        "INSERT INTO audit_log (at, actor, action, object_id, detail, outcome, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (*fields.values(), previous, entry_hash(fields, previous)),
    )


def append(db: Database, actor: str, action: str, object_id: str, outcome: str = "ok", **detail) -> None:
    """One entry in its own transaction: for actions that change nothing else in the database."""
    with db.transaction() as tx:
        record(tx, actor, action, object_id, outcome, **detail)


def os_actor() -> str:
    """The actor of a command run on the machine: `os:` and the login name (the uid where there is none)."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"os:uid-{os.getuid()}"


def entries(db: Database, object_id: str | None = None) -> list[dict]:
    sql, params = "SELECT * FROM audit_log", ()
    if object_id is not None:
        sql, params = sql + " WHERE object_id = ?", (object_id,)
    rows = db.query(sql + " ORDER BY seq", params)
    return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else {}} for r in rows]


def head(db: Database) -> str | None:
    """`SEQ:HASH` of the last entry: kept outside the database, it lets `verify_chain` catch a rewritten log."""
    row = db.query_one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return f"{row['seq']}:{row['hash']}" if row else None


def verify_chain(db: Database, known_head: str | None = None) -> list[AuditProblem]:
    """Every break in the chain, in seq order; empty when the log is intact.

    `known_head` is a `SEQ:HASH` recorded earlier (from `head` or an export): that entry must still be
    there with that hash, which catches an edit whose author also rewrote every later hash.
    """
    rows = db.query("SELECT * FROM audit_log ORDER BY seq")
    seq_of_hash = {row["hash"]: row["seq"] for row in rows if row["hash"]}
    problems: list[AuditProblem] = []
    previous_seq, previous_hash = 0, GENESIS
    for row in rows:
        problems += _entry_problems(row, previous_seq, previous_hash, seq_of_hash)
        previous_seq, previous_hash = row["seq"], row["hash"]
    issued = db.query_one("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
    if issued is not None and issued["seq"] > previous_seq:
        problems.append(AuditProblem(previous_seq + 1, "deleted",
                                     f"entries {_range(previous_seq + 1, issued['seq'])} at the end are missing"))
    if known_head is not None:
        problems += _head_problems(known_head, {row["seq"]: row["hash"] for row in rows})
    return sorted(problems, key=lambda problem: problem.seq)


def _entry_problems(row: sqlite3.Row, previous_seq: int, previous_hash: str | None,
                    seq_of_hash: dict[str, int]) -> list[AuditProblem]:
    seq, problems = row["seq"], []
    if row["hash"] is None:
        return [AuditProblem(seq, "unsealed", "the entry has no hash (written around the chain)")]
    if entry_hash(dict(row), row["prev_hash"]) != row["hash"]:
        problems.append(AuditProblem(seq, "edited", "its fields no longer match its hash"))
    if seq != previous_seq + 1:
        problems.append(AuditProblem(seq, "deleted", f"entries {_range(previous_seq + 1, seq - 1)} before it are missing"))
    elif row["prev_hash"] != previous_hash:
        linked = seq_of_hash.get(row["prev_hash"])
        if linked is not None:
            problems.append(AuditProblem(seq, "moved", f"it was written after entry {linked}, not after entry {previous_seq}"))
        else:
            problems.append(AuditProblem(previous_seq, "edited", f"it no longer has the hash that entry {seq} links to "
                                                                 "(changed and re-hashed)"))
    return problems


def _head_problems(known_head: str, hash_of_seq: dict[int, str]) -> list[AuditProblem]:
    seq_text, _, expected = known_head.partition(":")
    seq = int(seq_text)
    if seq not in hash_of_seq:
        return [AuditProblem(seq, "deleted", f"the recorded head {known_head[:24]}… is gone")]
    if hash_of_seq[seq] != expected:
        return [AuditProblem(seq, "edited", "its hash differs from the recorded head (the log was rewritten)")]
    return []


def _range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}–{last}"


def export(db: Database, since: datetime.datetime | None = None, format: Literal["jsonl", "csv"] = "jsonl") -> str:
    """Entries at or after `since` (naive times are UTC), oldest first, with their links so a reader can
    re-check the chain without the database."""
    cutoff = (_as_utc(since) - EPOCH) // MICROSECOND if since is not None else None
    rows = [_export_row(row) for row in db.query("SELECT * FROM audit_log ORDER BY seq")
            if cutoff is None or _micros(row["at"]) >= cutoff]
    if format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "detail": json.dumps(row["detail"], ensure_ascii=False)} for row in rows)
        return out.getvalue()
    raise ValueError(f"format: unknown export format '{format}' — use jsonl or csv")


def _as_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(tzinfo=datetime.timezone.utc) if moment.tzinfo is None else moment


def _micros(at: float) -> int:
    """Whole microseconds since the epoch, rounded down: the exported time and the `since` filter agree, so
    an exported entry's own time, passed back as `since`, includes it."""
    return math.floor(at * 1_000_000)


def _export_row(row: sqlite3.Row) -> dict:
    moment = EPOCH + _micros(row["at"]) * MICROSECOND
    return {"seq": row["seq"], "time": moment.isoformat(timespec="microseconds"), "actor": row["actor"],
            "action": row["action"], "object_id": row["object_id"], "outcome": row["outcome"],
            "detail": json.loads(row["detail"]) if row["detail"] else {}, "prev_hash": row["prev_hash"],
            "hash": row["hash"]}
