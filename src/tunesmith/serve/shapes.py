"""Registry records → the JSON objects OpenAI's API returns (what the `openai` package parses)."""
from __future__ import annotations

from tunesmith.registry.batches import STAMPS, Batch
from tunesmith.registry.files import FileRecord
from tunesmith.registry.job_events import Checkpoint, Event
from tunesmith.registry.jobs import Job
from tunesmith.registry.models import FineTunedModel
from tunesmith.serve.hyperparameters import SUPERVISED_KEYS
from tunesmith.registry.versions import ModelVersion, failures


def file_object(record: FileRecord) -> dict:
    return {"id": record.id, "object": "file", "bytes": record.bytes, "created_at": record.created_at,
            "filename": record.filename, "purpose": record.purpose, "status": record.status, "status_details": record.status_details}


def list_object(data: list[dict], has_more: bool = False) -> dict:
    body = {"object": "list", "data": data, "has_more": has_more}
    if data:
        body.update(first_id=data[0].get("id"), last_id=data[-1].get("id"))
    return body


def job_object(job: Job) -> dict:
    """`method` carries every hyperparameter of the job's method; the deprecated top-level field the supervised three."""
    hyper = {name: job.hyperparameters[name] for name in SUPERVISED_KEYS}
    return {
        "id": job.id, "object": "fine_tuning.job", "created_at": job.created_at, "model": job.model,
        "status": job.status, "training_file": job.training_file, "validation_file": job.validation_file,
        "hyperparameters": hyper, "seed": job.seed, "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at, "trained_tokens": job.trained_tokens, "error": job.error,
        "result_files": [], "organization_id": job.owner, "estimated_finish": None, "integrations": job.integrations or [],
        "metadata": job.metadata, "user_provided_suffix": job.suffix,
        "method": {"type": job.method, job.method: {"hyperparameters": job.hyperparameters,
                                                    **({"grader": job.grader} if job.method == "reinforcement" else {})}},
        "suite": job.suite,  # extension: the evaluation suite the job names (None: the quick evaluation)
    }


def event_object(event: Event) -> dict:
    return {"id": event.id, "object": "fine_tuning.job.event", "created_at": event.created_at,
            "level": event.level, "message": event.message, "type": event.type, "data": event.data or {}}


def checkpoint_object(checkpoint: Checkpoint) -> dict:
    return {"id": checkpoint.id, "object": "fine_tuning.job.checkpoint", "created_at": checkpoint.created_at,
            "fine_tuned_model_checkpoint": checkpoint.model_id, "fine_tuning_job_id": checkpoint.job_id,
            "step_number": checkpoint.step, "metrics": checkpoint.metrics}


def model_object(model_id: str, created: int = 0, owned_by: str = "tunesmith") -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def fine_tuned_model_object(model: FineTunedModel, lineage: dict | None = None) -> dict:
    """OpenAI's four fields plus the extension `lineage` (routes/lineage.py; None once the run is gone)."""
    return model_object(model.id, model.created_at, owned_by=model.owner) | {"lineage": lineage}


def version_object(version: ModelVersion, serving: bool, alias: str | None = None) -> dict:
    """A model object (OpenAI's four fields) for NAME:N, or for the alias NAME:latest that serves it, with the
    version's lineage and verdict as extra fields (the `openai` package keeps them as attributes)."""
    return model_object(alias or version.id, version.created_at, owned_by=version.owner) | {
        "version": version.number, "parent": f"{version.name}:{version.parent}" if version.parent else None,
        "root": version.base, "passed": version.passed, "promoted": serving, "failures": failures(version)}


def batch_object(batch: Batch) -> dict:
    return {"id": batch.id, "object": "batch", "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id, "completion_window": batch.completion_window, "status": batch.status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": batch.created_at, "expires_at": batch.expires_at,
            **{stamp: batch.stamps.get(stamp) for stamp in STAMPS},
            "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
            "metadata": batch.metadata}
