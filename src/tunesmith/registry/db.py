"""The SQLite database behind the registry: schema, one connection shared by threads, ids and clock.

Every row that a user can see carries `owner` (an API key id); queries always filter on it, so
another key's object is simply not found. Rows keep an implicit increasing `rowid`, which orders
lists and pagination (`after=ID`) without trusting clocks.
"""
from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

from tunesmith.registry.audit_chain import migrate_audit_log

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, secret_sha256 TEXT UNIQUE NOT NULL, name TEXT, created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, report TEXT, deleted_at INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, model TEXT NOT NULL,
    training_file TEXT NOT NULL, validation_file TEXT, hyperparameters TEXT NOT NULL, suffix TEXT,
    seed INTEGER NOT NULL, status TEXT NOT NULL, fine_tuned_model TEXT, trained_tokens INTEGER,
    error TEXT, finished_at INTEGER, metadata TEXT
);
CREATE TABLE IF NOT EXISTS job_events (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, created_at INTEGER NOT NULL, level TEXT NOT NULL,
    type TEXT NOT NULL, message TEXT NOT NULL, data TEXT, dedupe TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS job_checkpoints (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, created_at INTEGER NOT NULL, step INTEGER NOT NULL,
    metrics TEXT NOT NULL, model_id TEXT NOT NULL, UNIQUE (job_id, step)
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, job_id TEXT NOT NULL, base TEXT NOT NULL,
    run_dir TEXT NOT NULL, created_at INTEGER NOT NULL, deleted_at INTEGER
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    object_id TEXT NOT NULL, detail TEXT, outcome TEXT NOT NULL DEFAULT 'ok', prev_hash TEXT, hash TEXT
);
CREATE TABLE IF NOT EXISTS guards (
    model TEXT NOT NULL, owner TEXT NOT NULL, moderation_model TEXT NOT NULL, screen_input INTEGER NOT NULL,
    screen_output INTEGER NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (model, owner)
);
CREATE TABLE IF NOT EXISTS model_versions (
    owner TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, parent INTEGER,
    run_dir TEXT NOT NULL, base TEXT NOT NULL, passed INTEGER NOT NULL, evaluation TEXT NOT NULL,
    config TEXT NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (owner, name, number)
);
CREATE TABLE IF NOT EXISTS model_promotions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL,
    number INTEGER NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS comparisons (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,
    suite TEXT NOT NULL, item_limit INTEGER, status TEXT NOT NULL, report TEXT, error TEXT, finished_at INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint TEXT NOT NULL, input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    stamps TEXT NOT NULL, output_file_id TEXT, error_file_id TEXT, errors TEXT, total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, metadata TEXT
);
CREATE TABLE IF NOT EXISTS evals (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, data_source_config TEXT NOT NULL,
    testing_criteria TEXT NOT NULL, metadata TEXT, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS eval_runs (
    id TEXT PRIMARY KEY, eval_id TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL, data_source TEXT NOT NULL, metadata TEXT, created_at INTEGER NOT NULL, error TEXT,
    result_counts TEXT NOT NULL, per_criteria TEXT NOT NULL, per_model_usage TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS eval_output_items (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, eval_id TEXT NOT NULL, owner TEXT NOT NULL, item_index INTEGER NOT NULL,
    created_at INTEGER NOT NULL, status TEXT NOT NULL, item TEXT NOT NULL, results TEXT NOT NULL, sample TEXT NOT NULL,
    UNIQUE (run_id, item_index)
);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL, input_items TEXT NOT NULL,
    conversation TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, metadata TEXT
);
CREATE TABLE IF NOT EXISTS conversation_items (
    id TEXT NOT NULL, conversation_id TEXT NOT NULL, owner TEXT NOT NULL, item TEXT NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE INDEX IF NOT EXISTS eval_runs_by_eval ON eval_runs (eval_id);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner);
"""


class Database:
    """One SQLite connection used from several threads; `transaction()` serialises multi-statement changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.connection.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        with self.lock:
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives SIGKILL
            self.connection.executescript(SCHEMA)
            migrate_audit_log(self.connection)  # databases made before the audit log was hash-chained
            add_missing_columns(self.connection)
            self.connection.executescript(INDEXES_ON_ADDED_COLUMNS)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; anything failing, COMMIT included, is rolled back.

        A COMMIT that fails (a full disk, an I/O error, SQLITE_BUSY) can leave the transaction open: without
        the ROLLBACK every later BEGIN on this shared connection failed until the server restarted."""
        with self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
                self.connection.execute("COMMIT")
            except BaseException:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.connection.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: tuple = ()) -> int:
        """Run one statement in its own transaction; returns the number of changed rows."""
        with self.lock:
            return self.connection.execute(sql, params).rowcount

    def close(self) -> None:
        with self.lock:
            self.connection.close()


ADDED_COLUMNS = {  # (table, column) → declaration: columns added after the first release of the schema
    ("files", "sha256"): "TEXT",  # the stored content's digest: lineage and erasure find models by it
    ("api_keys", "pii_policy"): "TEXT NOT NULL DEFAULT 'refuse'",  # what an upload with personal data gets
    ("jobs", "integrations"): "TEXT",  # the job's OpenAI `integrations`, as sent
    ("jobs", "method"): "TEXT NOT NULL DEFAULT 'supervised'",  # OpenAI's method.type: supervised, dpo or reinforcement
    ("jobs", "suite"): "TEXT",  # the evaluation suite (HOME/suites/NAME.yaml) the job names; None = quick evaluation
    ("jobs", "grader"): "TEXT",  # a reinforcement job's grader (OpenAI's grader JSON, as checked); None otherwise
    ("api_keys", "scope"): "TEXT NOT NULL DEFAULT 'fine-tune'",  # what the key may do (registry/keys.py SCOPES)
    ("api_keys", "max_concurrent"): "INTEGER",  # per-key limits; NULL = the server's default (serve/limits.py)
    ("api_keys", "tokens_per_minute"): "INTEGER",
    ("api_keys", "max_queued_jobs"): "INTEGER",
    # OpenAI's file status: uploaded (its data check still running), processed, or error (status_details says why);
    # files stored before the check left the request were checked before they were recorded
    ("files", "status"): "TEXT NOT NULL DEFAULT 'processed'",
    ("files", "status_details"): "TEXT",
    # the stored response it continues (registry/responses.py); NULL: its row holds the whole conversation, as every
    # response stored before the column did
    ("responses", "previous_id"): "TEXT",
}
INDEXES_ON_ADDED_COLUMNS = "CREATE INDEX IF NOT EXISTS responses_by_previous ON responses (previous_id);"


def add_missing_columns(connection: sqlite3.Connection) -> None:
    """ALTER TABLE ... ADD COLUMN for each added column a database lacks (every new database, and old ones)."""
    for (table, column), declaration in ADDED_COLUMNS.items():
        present = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            except sqlite3.OperationalError as error:  # another process added it between our look and our change
                if "duplicate column" not in str(error):
                    raise


def new_id(prefix: str) -> str:
    """`file-…`, `ftjob-…`: a prefix and 24 random hex digits, safe to use inside a path we build."""
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def page(db: Database, table: str, where: str, params: tuple, after: str | None, limit: int,
         newest_first: bool = True) -> tuple[list[sqlite3.Row], bool]:
    """Rows of `table` matching `where`, ordered by insertion, starting after the row with id `after`.

    Returns (rows, has_more). An `after` id that does not match the filter yields an empty page.
    """
    order, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    cursor_sql = ""
    if after is not None:
        cursor_sql = f" AND rowid {compare} (SELECT rowid FROM {table} WHERE id = ? AND {where})"
        params = params + (after,) + params
    rows = db.query(f"SELECT * FROM {table} WHERE {where}{cursor_sql} ORDER BY rowid {order} LIMIT ?",
                    params + (limit + 1,))
    return rows[:limit], len(rows) > limit
