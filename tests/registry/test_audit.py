"""The hash-chained audit log: a clean log verifies; an edited, deleted or moved entry is named; old
databases are migrated and sealed; exports carry the links."""
import csv
import datetime
import io
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from tunesmith.registry import audit, files, jobs, keys
from tunesmith.registry.audit_chain import GENESIS, entry_hash
from tunesmith.registry.db import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "tunesmith.sqlite")
    owner, _ = keys.create_key(database, name="ci")  # 1 key.created
    files.add_file(database, files.new_file_id(), owner, "train.jsonl", "fine-tune", 12, {"ok": True})  # 2
    job = jobs.create_job(database, owner, "tiny", "file-" + "0" * 24, None, {"n_epochs": 1}, None, 42)  # 3
    jobs.transition(database, job.id, "cancelled", owner)  # 4
    audit.append(database, audit.os_actor(), "model.promoted", "ft:tiny:demo", outcome="denied", reason="gate failed")  # 5
    yield database
    database.close()


def tamper(db, sql, params=()):
    """Change the file behind the registry's back, as someone with write access to it would."""
    with sqlite3.connect(db.path) as connection:
        connection.execute(sql, params)


def test_a_clean_log_verifies_and_links_every_entry(db):
    rows = db.query("SELECT * FROM audit_log ORDER BY seq")
    assert len(rows) == 5 and audit.verify_chain(db) == []
    assert rows[0]["prev_hash"] == GENESIS
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(rows, rows[1:]))
    last = audit.entries(db)[-1]
    assert (last["actor"].startswith("os:"), last["outcome"], last["detail"]) == (True, "denied", {"reason": "gate failed"})
    assert audit.verify_chain(db, known_head=audit.head(db)) == []


def test_an_edited_entry_fails_verify(db):
    tamper(db, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 5")
    tamper(db, "UPDATE audit_log SET detail = json_set(detail, '$.name', 'nobody') WHERE seq = 1")
    problems = audit.verify_chain(db)
    assert [(p.seq, p.kind) for p in problems] == [(1, "edited"), (5, "edited")]
    assert str(problems[0]) == "audit_log entry 1: edited: its fields no longer match its hash"


def test_an_edited_and_rehashed_entry_breaks_the_next_link(db):
    row = dict(db.query_one("SELECT * FROM audit_log WHERE seq = 2"))
    row["actor"] = "key-someone-else"
    tamper(db, "UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 2", (row["actor"], entry_hash(row, row["prev_hash"])))
    assert [(p.seq, p.kind) for p in audit.verify_chain(db)] == [(2, "edited")]


def test_a_deleted_entry_fails_verify_in_the_middle_and_at_the_end(db):
    tamper(db, "DELETE FROM audit_log WHERE seq = 3")
    assert [(p.seq, p.kind, p.message) for p in audit.verify_chain(db)] == [
        (4, "deleted", "entries 3 before it are missing")]
    tamper(db, "DELETE FROM audit_log WHERE seq = 5")
    assert [(p.seq, p.kind) for p in audit.verify_chain(db)] == [(4, "deleted"), (5, "deleted")]


def test_a_moved_entry_is_named(db):
    tamper(db, "UPDATE audit_log SET seq = 100 WHERE seq = 3")
    tamper(db, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    tamper(db, "UPDATE audit_log SET seq = 4 WHERE seq = 100")
    problems = audit.verify_chain(db)
    assert [(p.seq, p.kind) for p in problems] == [(3, "moved"), (4, "moved"), (5, "moved")]
    assert problems[0].message == "it was written after entry 4, not after entry 2"


def test_a_fully_rewritten_chain_is_caught_only_against_a_head_kept_elsewhere(db):
    kept = audit.head(db)
    rows = [dict(r) for r in db.query("SELECT * FROM audit_log ORDER BY seq")]
    rows[1]["actor"] = "key-someone-else"
    previous = GENESIS
    for row in rows:  # re-hash everything from the edit on, as a careful forger would
        row["prev_hash"], row["hash"] = previous, entry_hash(row, previous)
        previous = row["hash"]
        tamper(db, "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
               (row["actor"], row["prev_hash"], row["hash"], row["seq"]))
    assert audit.verify_chain(db) == []
    assert [(p.seq, p.kind) for p in audit.verify_chain(db, known_head=kept)] == [(5, "edited")]


OLD_AUDIT_TABLE = """CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    object_id TEXT NOT NULL, detail TEXT)"""


def test_a_database_from_before_the_chain_is_migrated_and_sealed(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(OLD_AUDIT_TABLE)
        connection.executemany("INSERT INTO audit_log (at, actor, action, object_id, detail) VALUES (?, ?, ?, ?, ?)",
                               [(1.5, "key-a", "key.created", "key-a", None), (2.5, "key-a", "file.deleted", "file-1", "{}")])
    db = Database(path)
    rows = db.query("SELECT * FROM audit_log ORDER BY seq")
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("key.created", "ok"), ("file.deleted", "ok"), ("audit.chain_sealed", "ok")]
    assert json.loads(rows[2]["detail"]) == {"entries": 2} and audit.verify_chain(db) == []
    keys.create_key(db)
    assert audit.verify_chain(db) == []
    db.close()
    assert len(Database(path).query("SELECT * FROM audit_log")) == 4  # opening again migrates nothing


def test_export_jsonl_and_csv_since_a_time(db):
    all_rows = [json.loads(line) for line in audit.export(db).splitlines()]
    assert [r["seq"] for r in all_rows] == [1, 2, 3, 4, 5]
    assert set(all_rows[0]) == set(audit.EXPORT_COLUMNS)
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(all_rows, all_rows[1:]))
    since = datetime.datetime.fromisoformat(all_rows[3]["time"])
    assert [r["seq"] for r in map(json.loads, audit.export(db, since=since).splitlines())] == [4, 5]
    table = list(csv.DictReader(io.StringIO(audit.export(db, since=since, format="csv"))))
    assert [r["action"] for r in table] == ["job.cancelled", "model.promoted"]
    assert json.loads(table[1]["detail"]) == {"reason": "gate failed"} and table[1]["outcome"] == "denied"
    naive_future = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=1)
    assert audit.export(db, since=naive_future) == ""


def test_cli_verify_names_the_first_broken_entry_and_export_writes_a_format(db, tmp_path):
    from tunesmith.cli import app

    runner = CliRunner()
    clean = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path)])
    assert clean.exit_code == 0 and "5 entries, chain intact" in clean.output
    exported = runner.invoke(app, ["audit", "export", "--home", str(tmp_path), "--format", "csv"])
    assert exported.exit_code == 0 and exported.stdout.startswith("seq,time,actor,action")
    tamper(db, "DELETE FROM audit_log WHERE seq = 2")
    broken = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path)])
    assert broken.exit_code == 1 and "audit_log entry 3: deleted" in broken.output
    missing = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no registry database" in missing.output


def test_an_exported_time_passed_back_as_since_includes_its_entry(tmp_path, monkeypatch):
    db = Database(tmp_path / "times.sqlite")
    for at in (1764000000.1234567, 1764000000.9999996, 1764000001.0000004):  # round up, across a second, down
        monkeypatch.setattr(audit.time, "time", lambda at=at: at)
        audit.append(db, "os:ci", "file.deleted", f"file-{at}")
    for row in map(json.loads, audit.export(db).splitlines()):
        since = datetime.datetime.fromisoformat(row["time"])
        assert json.loads(audit.export(db, since=since).splitlines()[0])["seq"] == row["seq"]


def chat_file(path, extra: str = ""):
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {name}?{extra}"},
                          {"role": "assistant", "content": symbol}]} for name, symbol in (("gold", "Au"), ("tin", "Sn"))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cli_training_and_erasure_are_audited_in_the_default_home_or_in_home(tmp_path, tiny_model_dir, monkeypatch):
    from tunesmith.cli import app
    from tunesmith.data.hashing import file_sha256

    default, given = tmp_path / "default-home", tmp_path / "given-home"
    monkeypatch.setenv("TUNESMITH_HOME", str(default))
    runner, data = CliRunner(), chat_file(tmp_path / "facts.jsonl")
    digest = file_sha256(data)
    common = ["--base", str(tiny_model_dir), "--data", str(data), "--max-steps", "1", "--batch-size", "2", "--lora-r", "4"]
    assert runner.invoke(app, ["train", *common, "--out", str(tmp_path / "runs" / "a")]).exit_code == 0
    refused = runner.invoke(app, ["train", *common, "--data", str(chat_file(tmp_path / "p.jsonl", " ada@example.com")),
                                  "--out", str(tmp_path / "runs" / "b")])
    assert refused.exit_code == 1
    assert runner.invoke(app, ["train", *common, "--out", str(tmp_path / "c"), "--home", str(given)]).exit_code == 0
    erased = runner.invoke(app, ["erase", "--data", str(data), "--runs", str(tmp_path / "runs")])
    assert erased.exit_code == 0, erased.output

    log = Database(default / "tunesmith.sqlite")
    trail = [(e["actor"], e["action"], e["object_id"], e["outcome"].split(":")[0]) for e in audit.entries(log)]
    assert trail == [(audit.os_actor(), "run.trained", str((tmp_path / "runs" / "a").resolve()), "ok"),
                     (audit.os_actor(), "run.trained", str((tmp_path / "runs" / "b").resolve()), "refused"),
                     (audit.os_actor(), "data.erased", digest, "ok")]
    trained, _, erasure = audit.entries(log)
    assert trained["detail"]["data"] == {"train": digest} and trained["detail"]["steps"] == 1
    assert erasure["detail"]["deleted_files"] == [str(data.resolve())]
    assert erasure["detail"]["trained_models"] == [str((tmp_path / "runs" / "a").resolve())]
    assert audit.verify_chain(log) == [] and not data.exists()
    [elsewhere] = audit.entries(Database(given / "tunesmith.sqlite"))  # --home: that registry's log instead
    assert elsewhere["action"] == "run.trained" and elsewhere["object_id"] == str((tmp_path / "c").resolve())
