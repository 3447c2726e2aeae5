"""Fine-tuned models: one per succeeded job, owned by the job's key, pointing at the job's run directory."""
from __future__ import annotations

from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, now


@dataclass
class FineTunedModel:
    id: str
    owner: str
    job_id: str
    base: str
    run_dir: str
    created_at: int


def fine_tuned_model_id(base: str, suffix: str | None, job_id: str) -> str:
    """`ft:BASE:SUFFIX:JOB`, like OpenAI's ids; JOB is the random part of the job id."""
    return f"ft:{base}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"


def _model(row) -> FineTunedModel:
    data = dict(row)
    data.pop("deleted_at")
    return FineTunedModel(**data)


def add_model(tx, model_id: str, owner: str, job_id: str, base: str, run_dir: str) -> None:
    """Inside the transaction that marks the job succeeded, so a job never succeeds without its model."""
    tx.execute("INSERT OR IGNORE INTO models (id, owner, job_id, base, run_dir, created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (model_id, owner, job_id, base, run_dir, now()))
    audit.record(tx, owner, "model.created", model_id, job_id=job_id)


def get_model(db: Database, owner: str, model_id: str) -> FineTunedModel | None:
    row = db.query_one("SELECT * FROM models WHERE id = ? AND owner = ? AND deleted_at IS NULL", (model_id, owner))
    return _model(row) if row else None


def find_model(db: Database, model_id: str) -> FineTunedModel | None:
    """Any key's model, for an operator's setting that names one (a guard's moderation model)."""
    row = db.query_one("SELECT * FROM models WHERE id = ? AND deleted_at IS NULL", (model_id,))
    return _model(row) if row else None


def tuned_base(db: Database, owner: str, model: str) -> str:
    """The base a job's model ultimately starts from: the model itself for a base, the fine-tune's own base for
    one of the key's `ft:...` models (a continued fine-tune is named after that root base, as OpenAI names it)."""
    tuned = get_model(db, owner, model)
    return tuned.base if tuned is not None else model


def list_models(db: Database, owner: str) -> list[FineTunedModel]:
    rows = db.query("SELECT * FROM models WHERE owner = ? AND deleted_at IS NULL ORDER BY rowid", (owner,))
    return [_model(r) for r in rows]


def all_models(db: Database, owner: str | None = None) -> list[FineTunedModel]:
    """One key's models, or every key's (the operator's lineage and erasure), oldest first."""
    if owner is not None:
        return list_models(db, owner)
    return [_model(r) for r in db.query("SELECT * FROM models WHERE deleted_at IS NULL ORDER BY rowid")]


def models_older_than(db: Database, cutoff: int) -> list[FineTunedModel]:
    return [_model(r) for r in db.query("SELECT * FROM models WHERE created_at < ? AND deleted_at IS NULL ORDER BY rowid",
                                        (cutoff,))]


def delete_model(db: Database, owner: str, model_id: str, actor: str | None = None, action: str = "model.deleted",
                 **detail) -> bool:
    """Hides the model from the API; the run directory (weights, adapter) stays on disk unless the caller
    removes it (erasure and retention do). `actor` defaults to the owner."""
    with db.transaction() as tx:
        changed = tx.execute("UPDATE models SET deleted_at = ? WHERE id = ? AND owner = ? AND deleted_at IS NULL",
                             (now(), model_id, owner)).rowcount
        if changed:
            audit.record(tx, actor or owner, action, model_id, **detail)
    return bool(changed)
