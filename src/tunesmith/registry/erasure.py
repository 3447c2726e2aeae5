"""Erasure: delete a data file wherever tunesmith keeps it, and name (or delete) every model made from it.

Run as: tunesmith erase --data FILE_OR_HASH [--delete-models] [--runs runs] [--home HOME]
        (or DELETE /v1/files/{id}?delete_models=true through the API)

A person's erasure request reaches the data, the copies derived from it (the redacted copy a
`data.pii: redact` run trained on, the output items of eval runs over its rows) and the models trained on it directly or through a parent: their
weights hold what they learned from it. Without `delete_models` the models are only listed, so they can
be retrained without the data; with it their run directories (weights, adapter, checkpoints) go too,
and a registry model stops being served. Every deletion in a registry is audited with its digest.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.hashing import file_sha256
from tunesmith.registry import evals, files, jobs, models
from tunesmith.registry.db import Database
from tunesmith.registry.lineage import RunNode, TrainedOn, lineage, trained_on


class ErasureBlocked(RuntimeError):
    """A job that has not finished still reads the file; the message names it and what to do."""


@dataclass
class ErasureReport:
    sha256: str
    trained: list[TrainedOn]  # every model made from the data, directly or through a parent
    deleted_files: list[str] = field(default_factory=list)  # paths removed from disk, and registry file ids
    deleted_models: list[str] = field(default_factory=list)  # model ids, or run directories without one
    deleted_eval_runs: list[str] = field(default_factory=list)  # eval runs over the file's rows (they copy them)

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "trained_models": [t.to_json() for t in self.trained],
                "deleted_files": self.deleted_files, "deleted_models": self.deleted_models,
                "deleted_eval_runs": self.deleted_eval_runs}


def erase_data(digest: str, run_dirs: list[Path], *, actor: str, names: dict[Path, str] | None = None,
               db: Database | None = None, stored: list[files.FileRecord] = (), files_dir: Path | None = None,
               local_file: Path | None = None, delete_models: bool = False) -> ErasureReport:
    """Delete the data (`local_file`, recorded copies under the runs, the registry's `stored` files) and
    report, or with `delete_models` also delete, the models made from it.

    `digest` is a full SHA-256 or a prefix; files are deleted only after their full digest is checked.
    """
    if db is not None:
        for record in stored:
            if busy := jobs.unfinished_jobs_using(db, record.owner, record.id):
                raise ErasureBlocked(f"{record.id}: read by unfinished job(s) {', '.join(busy)} — cancel them "
                                     "(POST /v1/fine_tuning/jobs/ID/cancel), then erase again")
    trained = trained_on(digest, run_dirs, names)
    report = ErasureReport(digest, trained)
    copies = recorded_copies(digest, run_dirs, files_dir if db is not None else None)
    if local_file is not None and local_file.is_file():
        copies.add(local_file.resolve())
    for path in sorted(copies):
        path.unlink()
        report.deleted_files.append(str(path))
    trained_ids = [t.node.model_id or str(t.node.run_dir) for t in trained]
    for record in stored:
        if files.delete_file(db, record.owner, record.id, actor=actor, sha256=record.sha256, trained_models=trained_ids):
            files.blob_path(files_dir, record.id, record.filename).unlink(missing_ok=True)
            report.deleted_files.append(record.id)
        report.deleted_eval_runs += evals.delete_runs_reading(db, record.owner, record.id, record.sha256)
    if delete_models:
        for item in trained:
            report.deleted_models.append(delete_model_files(item.node, db, actor, reason=f"erasure of sha256 {digest}"))
    return report


def recorded_copies(digest: str, run_dirs: list[Path], files_dir: Path | None) -> set[Path]:
    """Files the runs recorded that still hold the data unchanged: the file itself, and copies redacted from it.

    A registry's stored files (under `files_dir`) are left to the registry, which marks their rows too.
    """
    expected: dict[Path, str] = {}  # path → the digest it had when recorded
    for run_dir in run_dirs:
        for node in lineage(run_dir).chain:
            replayed = [item for source in (node.record.get("replay") or {}).get("sources") or []
                        for item in source.get("files") or [] if isinstance(item, dict)]
            for entry in (node.record.get("data") or []) + replayed:  # replayed: a general text and its redacted copy
                source = entry.get("source") or {}
                if source.get("sha256", "").startswith(digest):
                    expected[Path(source["path"])] = source["sha256"]
                    expected[Path(entry["path"])] = entry["sha256"]  # the redacted copy of the erased file
                elif entry.get("sha256", "").startswith(digest):
                    expected[Path(entry["path"])] = entry["sha256"]
    stored = files_dir.resolve() if files_dir is not None else None
    return {path.resolve() for path, sha256 in expected.items()
            if path.is_file() and path.resolve().parent != stored and file_sha256(path) == sha256}


def delete_model_files(node: RunNode, db: Database | None, actor: str, reason: str) -> str:
    """Remove the run directory; a registry model is marked deleted (audited) first, so it is no longer served."""
    if db is not None and node.model_id is not None:
        model = models.find_model(db, node.model_id)
        if model is not None:
            models.delete_model(db, model.owner, model.id, actor=actor, reason=reason)
    shutil.rmtree(node.run_dir, ignore_errors=True)
    return node.model_id or str(node.run_dir)
