"""Named models with numbered versions (`elements-assistant:1`, `:2`, ...), and which one is served.

A version is a finished run registered under a name. It records its parent version (the version whose
run it continued, through run.json `parent`), its data (training file and sha256, replay), its resolved
config and its evaluation (the run's eval/update.json: gain on its own suite, every ancestor's suite
kept). Only a version whose evaluation passed can be promoted; `NAME:latest` is the promoted one.

Promotions form a stack per name: promote pushes a version, rollback pops back to the one served before.
Both are rows in `model_promotions` (and audit entries), so the history of what was served is kept.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunesmith.evaluate.suite import SuiteError, load_suite
from tunesmith.registry import audit
from tunesmith.registry.db import Database, now

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(?P<tag>[0-9]+|latest)$")
EVALUATION_FILE = Path("eval") / "update.json"


class VersionError(ValueError):
    """A version cannot be registered, promoted or rolled back; the message says why and what to do."""


@dataclass
class ModelVersion:
    owner: str
    name: str
    number: int
    parent: int | None
    run_dir: str
    base: str
    passed: bool
    evaluation: dict
    config: dict
    data: dict
    created_at: int

    @property
    def id(self) -> str:
        return f"{self.name}:{self.number}"


def _version(row) -> ModelVersion:
    fields = dict(row)
    for key in ("evaluation", "config", "data"):
        fields[key] = json.loads(fields[key])
    return ModelVersion(**{**fields, "passed": bool(fields["passed"])})


def read_run(run_dir: Path) -> tuple[dict, dict, dict]:
    """(run.json, config.yaml, eval/update.json) of a finished, evaluated run."""
    missing = [name for name in ("run.json", "config.yaml", str(EVALUATION_FILE)) if not (run_dir / name).is_file()]
    if missing:
        hint = " — train it with eval.suite set, so it has gates to pass" if str(EVALUATION_FILE) in missing else ""
        raise VersionError(f"{run_dir}: not a finished, evaluated run (no {', '.join(missing)}){hint}")
    return (json.loads((run_dir / "run.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text()),
            json.loads((run_dir / EVALUATION_FILE).read_text()))


def register_version(db: Database, owner: str, name: str, run_dir: Path, actor: str, promote: bool = True) -> ModelVersion:
    """Add a run as the next version of `name`; promote it when its evaluation passed (and `promote`)."""
    if not MODEL_NAME.match(name):
        raise VersionError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    run_dir = Path(run_dir).resolve()
    record, config, evaluation = read_run(run_dir)
    data = {"train_file": record.get("train_file"), "train_sha256": record.get("train_sha256"),
            "replay": record.get("replay")}
    with db.transaction() as tx:
        parent = parent_number(tx, owner, name, record)
        number = tx.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM model_versions WHERE owner = ? AND name = ?",
                            (owner, name)).fetchone()[0]
        tx.execute("INSERT INTO model_versions (owner, name, number, parent, run_dir, base, passed, evaluation, config,"
                   " data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (owner, name, number, parent, str(run_dir), record["base_model"], int(bool(evaluation["passed"])),
                    json.dumps(evaluation), json.dumps(config), json.dumps(data), now()))
        audit.record(tx, actor, "model.version_registered", f"{name}:{number}", owner=owner, run_dir=str(run_dir),
                     parent=parent, passed=bool(evaluation["passed"]))
        if promote and evaluation["passed"]:
            _push(tx, owner, name, number, "promote", actor)
    return get_version(db, owner, name, number)


def parent_number(tx, owner: str, name: str, record: dict) -> int | None:
    """The version of `name` whose run this run continued; None for a run from a base model."""
    parent = record.get("parent")
    if not parent:
        return None
    row = tx.execute("SELECT number FROM model_versions WHERE owner = ? AND name = ? AND run_dir = ?",
                     (owner, name, str(Path(parent["run_dir"]).resolve()))).fetchone()
    if row is None:
        raise VersionError(f"this run continued {parent['run_dir']}, which is no version of {name}: register "
                           "that run first, so the version records its parent")
    return row[0]


def get_version(db: Database, owner: str, name: str, number: int) -> ModelVersion | None:
    row = db.query_one("SELECT * FROM model_versions WHERE owner = ? AND name = ? AND number = ?", (owner, name, number))
    return _version(row) if row else None


def list_versions(db: Database, owner: str, name: str | None = None) -> list[ModelVersion]:
    sql, params = "SELECT * FROM model_versions WHERE owner = ?", (owner,)
    if name is not None:
        sql, params = sql + " AND name = ?", params + (name,)
    return [_version(r) for r in db.query(sql + " ORDER BY name, number", params)]


def promotion_stack(connection, owner: str, name: str) -> list[int]:
    """Served versions, oldest first: the last one is served; rollback returns to the one before it."""
    stack: list[int] = []
    rows = connection.execute("SELECT action, number FROM model_promotions WHERE owner = ? AND name = ? ORDER BY seq",
                              (owner, name)).fetchall()
    for action, number in rows:
        if action == "promote":
            stack.append(number)
        elif stack:
            stack.pop()
    return stack


def promoted(db: Database, owner: str, name: str) -> ModelVersion | None:
    """The version `NAME:latest` serves, or None before any promotion."""
    with db.lock:
        stack = promotion_stack(db.connection, owner, name)
    return get_version(db, owner, name, stack[-1]) if stack else None


def _push(tx, owner: str, name: str, number: int, action: str, actor: str) -> None:
    tx.execute("INSERT INTO model_promotions (owner, name, action, number, at) VALUES (?, ?, ?, ?, ?)",
               (owner, name, action, number, now()))
    audit.record(tx, actor, f"model.{action}d" if action == "promote" else "model.rolled_back", f"{name}:{number}",
                 owner=owner)


def promote(db: Database, owner: str, name: str, number: int, actor: str) -> ModelVersion:
    """Serve version `number` as NAME:latest; refused for a version whose gates failed."""
    version = get_version(db, owner, name, number)
    if version is None:
        raise VersionError(f"{name}:{number} does not exist")
    if not version.passed:
        raise VersionError(f"{name}:{number} failed its gates and cannot be promoted: " + "; ".join(failures(version)))
    with db.transaction() as tx:
        if promotion_stack(tx, owner, name)[-1:] != [number]:
            _push(tx, owner, name, number, "promote", actor)
    return version


def rollback(db: Database, owner: str, name: str, actor: str) -> ModelVersion:
    """Serve again the version promoted before the current one; returns it."""
    with db.transaction() as tx:
        stack = promotion_stack(tx, owner, name)
        if len(stack) < 2:
            raise VersionError(f"{name} has no earlier promoted version to roll back to")
        _push(tx, owner, name, stack[-2], "rollback", actor)
    return get_version(db, owner, name, stack[-2])


def resolve(db: Database, owner: str, ref: str) -> ModelVersion | None:
    """`NAME:N` or `NAME:latest` (the promoted version); None when it names nothing of this key's."""
    match = VERSION_REF.match(ref)
    if match is None:
        return None
    name, tag = match["name"], match["tag"]
    return promoted(db, owner, name) if tag == "latest" else get_version(db, owner, name, int(tag))


def failures(version: ModelVersion) -> list[str]:
    """What a failed version failed: gain gates and forgotten ancestor scores, as their messages."""
    evaluation = version.evaluation
    failed = [gate["message"] for gate in evaluation.get("gain_gates", []) if not gate["passed"]]
    return failed + [kept["message"] for kept in evaluation.get("kept", []) if not kept["passed"]]


@dataclass
class ScoreHistory:
    """Every keepable score (`suite.task.metric`) measured after every version, for one model name."""

    columns: list[str]  # SUITE.TASK.METRIC, in the order the versions first measured them
    rows: list[tuple[ModelVersion, dict[str, tuple[float, str]]]]  # version → column → (value, verdict)


def score_history(versions: list[ModelVersion]) -> ScoreHistory:
    """Each version's scores on its own suite and on every ancestor's suite (its eval/update.json), with the
    verdict of a kept score: `kept`, `FORGOTTEN` or `retired` (a version's own suite: `measured`)."""
    columns: dict[str, None] = {}
    rows = []
    for version in versions:
        evaluation = version.evaluation
        verdicts = {f"{k['suite']}.{k['task']}.{k['metric']}":
                    "retired" if k["retired"] else ("kept" if k["passed"] else "FORGOTTEN")
                    for k in evaluation.get("kept", [])}
        cells = {}
        for suite_path, tasks in evaluation.get("scores", {}).items():
            suite = suite_name(Path(suite_path))
            for task, metrics in tasks.items():
                for metric, value in metrics.items():
                    column = f"{suite}.{task}.{metric}"
                    columns.setdefault(column)
                    cells[column] = (value, verdicts.get(column, "measured"))
        rows.append((version, cells))
    return ScoreHistory(list(columns), rows)


def suite_name(path: Path) -> str:
    """A suite's `name:` (what `eval.retired` and the kept results call it); the file's folder if it is gone."""
    try:
        return load_suite(path).name
    except (SuiteError, OSError):
        return path.parent.name
