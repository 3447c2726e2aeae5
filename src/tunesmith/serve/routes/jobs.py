"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints.

The handlers only record intent in the registry; the job worker (another process's supervisor
thread) does the training and notices cancel/pause between its polls.
"""
from __future__ import annotations

import secrets
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.registry import audit, files, job_events, jobs
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.shapes import checkpoint_object, event_object, job_object, list_object
from tunesmith.train.trackers import tracker_installed

router = APIRouter(prefix="/v1/fine_tuning/jobs")
AUTO = {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.0}


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int | Literal["auto"] | None = Field(None, ge=1, le=50)
    batch_size: int | Literal["auto"] | None = Field(None, ge=1, le=256)
    learning_rate_multiplier: float | Literal["auto"] | None = Field(None, gt=0, le=100)


class Supervised(BaseModel):
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised"]
    supervised: Supervised | None = None


class Integration(BaseModel):
    """OpenAI's `{"type": "wandb", "wandb": {...}}`; the type's own settings are kept as sent."""

    model_config = ConfigDict(extra="allow")
    type: str


INTEGRATIONS = ("wandb", "tensorboard", "mlflow")


def checked_integrations(given: list[Integration] | None) -> list[dict] | None:
    """What the job records. `wandb` (OpenAI's) is recorded only: this server sends nothing out. `tensorboard` and
    `mlflow` (extensions) are recorded and run by the job itself (train.report_to, into its run directory)."""
    for index, item in enumerate(given or []):
        if item.type not in INTEGRATIONS:
            raise APIError(400, f"integrations[{index}].type: unknown integration {item.type!r} — use one of "
                                f"{', '.join(INTEGRATIONS)}.", param="integrations")
        if item.type != "wandb" and not tracker_installed(item.type):
            raise APIError(400, f"integrations[{index}]: {item.type} is not installed on this server — install "
                                f"tunesmith[{item.type}] there, or leave it out.", param="integrations")
    return [item.model_dump() for item in given] if given else None


class CreateJob(BaseModel):
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    method: Method | None = None
    metadata: dict[str, str] | None = None
    integrations: list[Integration] | None = None  # recorded on the job; see checked_integrations


def resolve_hyperparameters(body: CreateJob) -> dict:
    given = body.hyperparameters
    if body.method is not None and body.method.supervised is not None and body.method.supervised.hyperparameters:
        given = body.method.supervised.hyperparameters
    values = given.model_dump() if given is not None else {}
    return {name: default if values.get(name) in (None, "auto") else values[name] for name, default in AUTO.items()}


def check_file(request: Request, key: str, file_id: str | None, param: str) -> None:
    if file_id is not None and files.get_file(request.app.state.db, key, file_id) is None:
        raise not_found("file", file_id, param=param)


@router.post("")
def create_job(request: Request, body: CreateJob, key: str = Depends(api_key)):
    if body.model not in request.app.state.settings.base_models():
        raise APIError(404, f"Model {body.model} is not a base model this server fine-tunes "
                            f"(served: {', '.join(request.app.state.settings.base_models())}).",
                       param="model", code="model_not_found")
    check_file(request, key, body.training_file, "training_file")
    check_file(request, key, body.validation_file, "validation_file")
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    job = jobs.create_job(request.app.state.db, key, body.model, body.training_file, body.validation_file,
                          resolve_hyperparameters(body), body.suffix, seed, body.metadata,
                          integrations=checked_integrations(body.integrations))
    return job_object(job)


@router.get("")
def list_jobs(request: Request, after: str | None = None, limit: int = 20, key: str = Depends(api_key)):
    found, more = jobs.list_jobs(request.app.state.db, key, after, max(1, min(limit, 100)))
    return list_object([job_object(j) for j in found], more)


def owned_job(request: Request, key: str, job_id: str) -> jobs.Job:
    job = jobs.get_job(request.app.state.db, job_id, owner=key)
    if job is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return job


@router.get("/{job_id}")
def retrieve_job(request: Request, job_id: str, key: str = Depends(api_key)):
    return job_object(owned_job(request, key, job_id))


USER_ACTIONS = {  # action → (new status, event message, states it may come from; None = any the state machine allows)
    "cancel": ("cancelled", "Job cancelled by the user", None),
    "pause": ("paused", "Job paused by the user", None),
    "resume": ("queued", "Job resumed by the user", {"paused"}),
}


def change_status(request: Request, key: str, job_id: str, action: str) -> dict:
    owned_job(request, key, job_id)
    wanted, message, only_from = USER_ACTIONS[action]
    try:
        return job_object(jobs.transition(request.app.state.db, job_id, wanted, key, message, only_from=only_from))
    except jobs.InvalidTransition as exc:
        audit.append(request.app.state.db, key, f"job.{wanted}", job_id, outcome=f"refused: the job is {exc.current}")
        raise APIError(409, f"Cannot {action} job {job_id}: it is {exc.current}.",
                       param="fine_tuning_job_id", code="invalid_state") from None


@router.post("/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, key: str = Depends(api_key)):
    return change_status(request, key, job_id, "cancel")


@router.post("/{job_id}/pause")
def pause_job(request: Request, job_id: str, key: str = Depends(api_key)):
    return change_status(request, key, job_id, "pause")


@router.post("/{job_id}/resume")
def resume_job(request: Request, job_id: str, key: str = Depends(api_key)):
    return change_status(request, key, job_id, "resume")


@router.get("/{job_id}/events")
def list_events(request: Request, job_id: str, after: str | None = None, limit: int = 20, key: str = Depends(api_key)):
    owned_job(request, key, job_id)
    found, more = job_events.list_events(request.app.state.db, job_id, after, max(1, min(limit, 1000)))
    return list_object([event_object(e) for e in found], more)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(request: Request, job_id: str, after: str | None = None, limit: int = 10,
                     key: str = Depends(api_key)):
    owned_job(request, key, job_id)
    found, more = job_events.list_checkpoints(request.app.state.db, job_id, after, max(1, min(limit, 100)))
    return list_object([checkpoint_object(c) for c in found], more)
