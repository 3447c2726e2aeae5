"""Retention: uploaded files and training artifacts older than `ServeSettings.retention_days` are deleted.

Run as: tunesmith serve --home DIR --retention-days 30   (the job worker applies it every few minutes)

Old uploads go (a file an unfinished job, batch or eval run still reads waits for it), then old fine-tuned models
(their run directory: weights, adapter, checkpoints; the model stops being served), then the directories of old jobs
that produced no model (failed or cancelled runs keep checkpoints trained on the data), then stored responses
and conversations (what was said) and finished eval runs (their output items copy the rows and answers). Each deletion is an
audit entry by the actor `retention`, with the age limit that caused it.
"""
from __future__ import annotations

import shutil
import time

from tunesmith.registry import audit, conversations, evals, files, jobs, models, responses
from tunesmith.registry.db import Database
from tunesmith.registry.file_readers import unfinished_readers
from tunesmith.serve.settings import ServeSettings

ACTOR = "retention"
EVERY_SECONDS = 300  # a day-scale limit needs no finer look


class Retention:
    def __init__(self, db: Database, settings: ServeSettings):
        self.db, self.settings = db, settings
        self.next_run = 0.0

    def run_if_due(self) -> list[str]:
        if self.settings.retention_days is None or time.monotonic() < self.next_run:
            return []
        self.next_run = time.monotonic() + EVERY_SECONDS
        return expire(self.db, self.settings, time.time())


def expire(db: Database, settings: ServeSettings, now: float) -> list[str]:
    """Delete what is older than the limit at `now`; returns the ids deleted."""
    cutoff = int(now - settings.retention_days * 86400)
    detail = {"retention_days": settings.retention_days}
    deleted: list[str] = []
    for record in files.files_older_than(db, cutoff):
        if any(unfinished_readers(db, record.owner, record.id).values()):
            continue
        if files.delete_file(db, record.owner, record.id, actor=ACTOR, action="file.expired", **detail):
            files.blob_path(settings.files_dir, record.id, record.filename).unlink(missing_ok=True)
            deleted.append(record.id)
    for model in models.models_older_than(db, cutoff):
        if models.delete_model(db, model.owner, model.id, actor=ACTOR, action="model.expired", **detail):
            shutil.rmtree(model.run_dir, ignore_errors=True)
            deleted.append(model.id)
    for job in jobs.finished_without_model_before(db, cutoff):
        directory = settings.jobs_dir / job.id
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            audit.append(db, ACTOR, "job.artifacts_expired", job.id, **detail)
            deleted.append(job.id)
    for owner, response_id in responses.responses_before(db, cutoff):
        if responses.delete_response(db, owner, response_id, actor=ACTOR, action="response.expired", **detail):
            deleted.append(response_id)
    for conversation in conversations.conversations_before(db, cutoff):
        conversations.delete_conversation(db, conversation, actor=ACTOR, action="conversation.expired", **detail)
        deleted.append(conversation.id)
    for run in evals.finished_runs_before(db, cutoff):
        evals.delete_run(db, run, actor=ACTOR, action="eval.run.expired", **detail)
        deleted.append(run.id)
    return deleted
