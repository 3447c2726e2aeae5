"""The shared connection recovers from a COMMIT that fails (a full disk, an I/O error)."""
import sqlite3

import pytest

from tunesmith.registry.db import Database


class CommitFails:
    """The connection, except that its next COMMIT fails as SQLite's does on a full disk (transaction left open)."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection, self.failures = connection, 1

    def execute(self, sql: str, *args):
        if sql == "COMMIT" and self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.connection.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.connection, name)


def test_a_failed_commit_is_rolled_back_and_the_next_transaction_works(tmp_path):
    db = Database(tmp_path / "t.sqlite")
    db.connection = CommitFails(db.connection)
    insert = "INSERT INTO api_keys (id, secret_sha256, created_at) VALUES (?, ?, 0)"
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        with db.transaction() as tx:
            tx.execute(insert, ("key-lost", "a"))
    with db.transaction() as tx:
        tx.execute(insert, ("key-kept", "b"))
    assert [row["id"] for row in db.query("SELECT id FROM api_keys")] == ["key-kept"]
    assert [row["id"] for row in Database(tmp_path / "t.sqlite").query("SELECT id FROM api_keys")] == ["key-kept"]


def test_a_second_writer_holding_the_lock_is_waited_for(tmp_path):
    """Another process (the CLI revoking a key, say) writing at the same moment: the transaction waits its turn."""
    import threading
    import time

    db = Database(tmp_path / "t.sqlite")
    other = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO api_keys (id, secret_sha256, created_at) VALUES ('key-other', 'o', 0)")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    started = time.perf_counter()
    with db.transaction() as tx:
        tx.execute("INSERT INTO api_keys (id, secret_sha256, created_at) VALUES ('key-mine', 'm', 0)")
    assert time.perf_counter() - started >= 0.4
    assert sorted(row["id"] for row in db.query("SELECT id FROM api_keys")) == ["key-mine", "key-other"]
