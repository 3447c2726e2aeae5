"""Evals (OpenAI's Evals API): an eval (its item schema and testing criteria), its runs (a model's answers, or
given answers, graded) and each run's output items (one graded row).

A run moves queued → in_progress → completed, or to failed (its model or data gone, a server error) or canceled
(by the user); each move is audited. Output items are recorded as each row is graded, one per row (UNIQUE on the
row's index), so a run resumed after a stop grades only the rows it has not. Deleting an eval deletes its runs
and their items.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now, page

UNFINISHED = ("queued", "in_progress")
RUN_STATUSES = ("queued", "in_progress", "completed", "canceled", "failed")


@dataclass
class Eval:
    id: str
    owner: str
    name: str
    data_source_config: dict  # as given: {"type": "custom", "item_schema": ..., "include_sample_schema": ...}
    testing_criteria: list[dict]  # normalized (evaluate/testing_criteria.py Criterion.spec)
    metadata: dict | None
    created_at: int


@dataclass
class EvalRun:
    id: str
    eval_id: str
    owner: str
    name: str
    model: str  # the model asked, or "" for a run of given answers
    status: str
    data_source: dict
    metadata: dict | None
    created_at: int
    error: dict | None = None  # {code, message} once failed
    result_counts: dict = field(default_factory=lambda: {"total": 0, "errored": 0, "failed": 0, "passed": 0})
    per_criteria: list[dict] = field(default_factory=list)  # [{testing_criteria, passed, failed}]
    per_model_usage: list[dict] = field(default_factory=list)


@dataclass
class OutputItem:
    id: str
    run_id: str
    eval_id: str
    item_index: int
    created_at: int
    status: str  # pass, fail or error
    item: dict
    results: list[dict]
    sample: dict


def _loaded(row, names: tuple[str, ...]) -> dict:
    data = dict(row)
    for name in names:
        data[name] = json.loads(data[name]) if data[name] is not None else None
    return data


def _eval(row) -> Eval:
    data = _loaded(row, ("data_source_config", "testing_criteria", "metadata"))
    data.pop("deleted_at", None)
    return Eval(**data)


def _run(row) -> EvalRun:
    return EvalRun(**_loaded(row, ("data_source", "metadata", "error", "result_counts", "per_criteria",
                                   "per_model_usage")))


def _item(row) -> OutputItem:
    data = _loaded(row, ("item", "results", "sample"))
    data.pop("owner")
    return OutputItem(**data)


def create_eval(db: Database, owner: str, name: str, data_source_config: dict, testing_criteria: list[dict],
                metadata: dict | None) -> Eval:
    eval_id = new_id("eval")
    with db.transaction() as tx:
        tx.execute("INSERT INTO evals (id, owner, name, data_source_config, testing_criteria, metadata, created_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (eval_id, owner, name, json.dumps(data_source_config),
                                                   json.dumps(testing_criteria), dumps(metadata), now()))
        audit.record(tx, owner, "eval.created", eval_id, name=name,
                     criteria=[criterion["name"] for criterion in testing_criteria])
    return get_eval(db, owner, eval_id)


def dumps(value) -> str | None:
    return None if value is None else json.dumps(value)


def get_eval(db: Database, owner: str, eval_id: str) -> Eval | None:
    row = db.query_one("SELECT * FROM evals WHERE id = ? AND owner = ?", (eval_id, owner))
    return _eval(row) if row else None


def list_evals(db: Database, owner: str, after: str | None, limit: int, newest_first: bool) -> tuple[list[Eval], bool]:
    rows, more = page(db, "evals", "owner = ?", (owner,), after, limit, newest_first)
    return [_eval(r) for r in rows], more


def update_eval(db: Database, found: Eval, name: str | None, metadata: dict | None) -> Eval:
    with db.transaction() as tx:
        if name is not None:
            tx.execute("UPDATE evals SET name = ? WHERE id = ?", (name, found.id))
        if metadata is not None:
            tx.execute("UPDATE evals SET metadata = ? WHERE id = ?", (json.dumps(metadata), found.id))
        audit.record(tx, found.owner, "eval.updated", found.id, name=name, metadata=metadata is not None)
    return get_eval(db, found.owner, found.id)


def delete_eval(db: Database, found: Eval) -> list[str]:
    """The eval, its runs and their output items; returns the runs that were unfinished (each stops at its next
    row)."""
    marks = ", ".join("?" * len(UNFINISHED))
    with db.transaction() as tx:
        unfinished = [row["id"] for row in tx.execute(
            f"SELECT id FROM eval_runs WHERE eval_id = ? AND status IN ({marks})", (found.id, *UNFINISHED))]
        tx.execute("DELETE FROM eval_output_items WHERE eval_id = ?", (found.id,))
        runs = tx.execute("DELETE FROM eval_runs WHERE eval_id = ?", (found.id,)).rowcount
        tx.execute("DELETE FROM evals WHERE id = ?", (found.id,))
        audit.record(tx, found.owner, "eval.deleted", found.id, runs=runs)
    return unfinished


def create_run(db: Database, found: Eval, name: str, model: str, data_source: dict, metadata: dict | None,
               total: int) -> EvalRun:
    run_id, counts = new_id("evalrun"), {"total": total, "errored": 0, "failed": 0, "passed": 0}
    per_criteria = [{"testing_criteria": c["name"], "passed": 0, "failed": 0} for c in found.testing_criteria]
    with db.transaction() as tx:
        tx.execute("INSERT INTO eval_runs (id, eval_id, owner, name, model, status, data_source, metadata, created_at,"
                   " result_counts, per_criteria, per_model_usage) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, '[]')",
                   (run_id, found.id, found.owner, name, model, json.dumps(data_source), dumps(metadata), now(),
                    json.dumps(counts), json.dumps(per_criteria)))
        audit.record(tx, found.owner, "eval.run.created", run_id, eval_id=found.id, model=model or None, rows=total)
    return get_run(db, found.owner, found.id, run_id)


def get_run(db: Database, owner: str, eval_id: str, run_id: str) -> EvalRun | None:
    row = db.query_one("SELECT * FROM eval_runs WHERE id = ? AND eval_id = ? AND owner = ?", (run_id, eval_id, owner))
    return _run(row) if row else None


def list_runs(db: Database, owner: str, eval_id: str, status: str | None, after: str | None, limit: int,
              newest_first: bool) -> tuple[list[EvalRun], bool]:
    rows, more = status_page(db, "eval_runs", "owner = ? AND eval_id = ?", (owner, eval_id), status, after, limit,
                             newest_first)
    return [_run(r) for r in rows], more


def status_page(db: Database, table: str, where: str, params: tuple, status: str | None, after: str | None, limit: int,
                newest_first: bool):
    """registry.db.page, of the rows with `status` only when one is given (runs' and output items' list filter)."""
    if status is not None:
        where, params = where + " AND status = ?", params + (status,)
    return page(db, table, where, params, after, limit, newest_first)


def unfinished_runs(db: Database) -> list[EvalRun]:
    """Every key's runs still to grade, oldest first (a restarted server picks them up)."""
    return [_run(r) for r in db.query("SELECT * FROM eval_runs WHERE status IN (?, ?) ORDER BY rowid", UNFINISHED)]


def runs_reading(db: Database, owner: str, file_id: str) -> list[EvalRun]:
    """The key's runs whose rows come from the uploaded file `file_id`."""
    runs = [_run(row) for row in db.query("SELECT * FROM eval_runs WHERE owner = ?", (owner,))]
    return [run for run in runs if run.data_source.get("source", {}).get("id") == file_id]


def unfinished_runs_using(db: Database, owner: str, file_id: str) -> list[str]:
    return [run.id for run in runs_reading(db, owner, file_id) if run.status in UNFINISHED]


def move_run(db: Database, run: EvalRun, status: str, *, only_from: tuple[str, ...] = UNFINISHED,
             error: dict | None = None) -> bool:
    """Set the run's status unless it has meanwhile left `only_from` (a cancel racing the runner). Audited."""
    marks = ", ".join("?" * len(only_from))
    with db.transaction() as tx:
        changed = tx.execute(f"UPDATE eval_runs SET status = ?, error = ? WHERE id = ? AND status IN ({marks})",
                             (status, dumps(error), run.id, *only_from)).rowcount
        if changed:
            audit.record(tx, run.owner, f"eval.run.{status}", run.id, eval_id=run.eval_id,
                         **({"error": error["code"]} if error else {}))
    if changed:
        run.status, run.error = status, error
    return bool(changed)


def delete_run(db: Database, run: EvalRun, actor: str | None = None, action: str = "eval.run.deleted", **why) -> None:
    with db.transaction() as tx:
        tx.execute("DELETE FROM eval_output_items WHERE run_id = ?", (run.id,))
        tx.execute("DELETE FROM eval_runs WHERE id = ?", (run.id,))
        audit.record(tx, actor or run.owner, action, run.id, eval_id=run.eval_id, **why)


def finished_runs_before(db: Database, cutoff: int) -> list[EvalRun]:
    """Every key's finished runs created before `cutoff` (retention: their output items copy the rows)."""
    marks = ", ".join("?" * len(UNFINISHED))
    return [_run(r) for r in db.query(f"SELECT * FROM eval_runs WHERE created_at < ? AND status NOT IN ({marks})",
                                      (cutoff, *UNFINISHED))]


def delete_runs_reading(db: Database, owner: str, file_id: str, sha256: str | None) -> list[str]:
    """Erasure of a file: the runs whose rows came from it, with their output items (which copy the rows)."""
    reading = runs_reading(db, owner, file_id)
    for run in reading:
        delete_run(db, run, reason=f"erasure of file {file_id}", sha256=sha256)
    return [run.id for run in reading]


def record_item(db: Database, run: EvalRun, item_index: int, status: str, item: dict, results: list[dict],
                sample: dict) -> bool:
    """One graded row, and the run's counts with it; False (nothing written) once the run is gone or the row was
    recorded before (a resumed run)."""
    with db.transaction() as tx:
        if tx.execute("SELECT 1 FROM eval_runs WHERE id = ?", (run.id,)).fetchone() is None:
            return False
        inserted = tx.execute(
            "INSERT OR IGNORE INTO eval_output_items (id, run_id, eval_id, owner, item_index, created_at, status, item,"
            " results, sample) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id("outputitem"), run.id, run.eval_id, run.owner, item_index, now(), status, json.dumps(item),
             json.dumps(results), json.dumps(sample))).rowcount
        if inserted:
            current = _run(tx.execute("SELECT * FROM eval_runs WHERE id = ?", (run.id,)).fetchone())
            tallied = tallied_with(current, status, results, sample)
            tx.execute("UPDATE eval_runs SET result_counts = ?, per_criteria = ?, per_model_usage = ? WHERE id = ?",
                       (*[json.dumps(value) for value in tallied], run.id))
    return bool(inserted)


def tallied_with(run: EvalRun, status: str, results: list[dict], sample: dict) -> tuple[dict, list[dict], list[dict]]:
    """The run's result_counts, per-criterion passes and failures, and model usage with one more graded row."""
    counts = dict(run.result_counts)
    counts[{"pass": "passed", "fail": "failed"}.get(status, "errored")] += 1
    verdicts = {result["name"]: result for result in results if result.get("error") is None}
    per_criteria = []
    for entry in run.per_criteria:
        result = verdicts.get(entry["testing_criteria"])
        if result is not None:
            outcome = "passed" if result["passed"] else "failed"
            entry = {**entry, outcome: entry[outcome] + 1}
        per_criteria.append(entry)
    usage = dict((entry["model_name"], entry) for entry in run.per_model_usage)
    spent = [(run.model, sample.get("usage"))] if run.model else []
    spent += [(result["sample"].get("model"), result["sample"].get("usage"))  # model graders' judges
              for result in results if isinstance(result.get("sample"), dict)]
    for model, tokens in spent:
        if not tokens:
            continue
        totals = usage.get(model) or {"model_name": model, "invocation_count": 0, "prompt_tokens": 0,
                                      "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}
        usage[model] = {**totals, "invocation_count": totals["invocation_count"] + 1,
                        **{name: totals[name] + (tokens.get(name) or 0)
                           for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")}}
    return counts, per_criteria, list(usage.values())


def graded_indexes(db: Database, run_id: str) -> set[int]:
    return {r["item_index"] for r in db.query("SELECT item_index FROM eval_output_items WHERE run_id = ?", (run_id,))}


def get_item(db: Database, owner: str, run_id: str, item_id: str) -> OutputItem | None:
    row = db.query_one("SELECT * FROM eval_output_items WHERE id = ? AND run_id = ? AND owner = ?",
                       (item_id, run_id, owner))
    return _item(row) if row else None


def list_items(db: Database, owner: str, run_id: str, status: str | None, after: str | None, limit: int,
               newest_first: bool) -> tuple[list[OutputItem], bool]:
    rows, more = status_page(db, "eval_output_items", "owner = ? AND run_id = ?", (owner, run_id), status, after, limit,
                             newest_first)
    return [_item(r) for r in rows], more
