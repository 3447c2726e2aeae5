"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints.

The handlers only record intent in the registry; the job worker (another process's supervisor
thread) does the training and notices cancel/pause between its polls. A job's method is OpenAI's
`method: {type: supervised | dpo | reinforcement, <type>: {hyperparameters: {...}}}` (the top-level `hyperparameters`
still works for supervised jobs; a reinforcement job's section also holds its `grader`, train/graders.py); each value
is a number or "auto", resolved when the job starts.
"""
from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tunesmith.data.check import is_preference_file, is_prompt_file
from tunesmith.data.preference import load_preferences
from tunesmith.registry import audit, files, job_events, jobs, models
from tunesmith.registry.keys import ApiKey
from tunesmith.serve.auth import api_key, calling_key
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.file_checks import CHECK_WAIT_SECONDS
from tunesmith.serve.hyperparameters import requested_hyperparameters
from tunesmith.serve.routes.graders import api_grader
from tunesmith.serve.limits import rate_limited
from tunesmith.serve.suites import available_suites
from tunesmith.serve.shapes import checkpoint_object, event_object, job_object, list_object
from tunesmith.train.graders import graded_prompt_rows
from tunesmith.train.trackers import tracker_installed

router = APIRouter(prefix="/v1/fine_tuning/jobs")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def within(low: float, high: float, low_included: bool = True) -> AfterValidator:
    """Bounds on the number only ("auto" passes); checked after the union so an error names the field alone."""
    def check(value):
        if not isinstance(value, (int, float)):
            return value
        if not ((low <= value if low_included else low < value) and value <= high):
            raise ValueError(f"must be {'>=' if low_included else '>'} {low} and <= {high}, or \"auto\"")
        return value
    return AfterValidator(check)


class Hyperparameters(Strict):
    """A supervised job's, as OpenAI takes them: each a number, "auto" or absent (also "auto")."""

    n_epochs: Annotated[int | Literal["auto"] | None, within(1, 50)] = None
    batch_size: Annotated[int | Literal["auto"] | None, within(1, 256)] = None
    learning_rate_multiplier: Annotated[float | Literal["auto"] | None, within(0, 100, low_included=False)] = None


class DpoHyperparameters(Hyperparameters):
    beta: Annotated[float | Literal["auto"] | None, within(0, 2, low_included=False)] = None
    # tunesmith's extension (serve/hyperparameters.py): the preference loss, and SimPO's target margin
    loss: Literal["sigmoid", "ipo", "simpo", "auto"] | None = None
    simpo_gamma: Annotated[float | Literal["auto"] | None, within(0, 10)] = None


class ReinforcementHyperparameters(Hyperparameters):
    """OpenAI's reinforcement hyperparameters (serve/hyperparameters.py says what each "auto" becomes)."""

    compute_multiplier: Annotated[float | Literal["auto"] | None, within(0.25, 8)] = None  # × 8 answers a prompt
    eval_interval: Annotated[int | Literal["auto"] | None, within(1, 10_000)] = None
    eval_samples: Annotated[int | Literal["auto"] | None, within(1, 10_000)] = None
    reasoning_effort: Literal["default", "low", "medium", "high"] | None = None


class Supervised(Strict):
    hyperparameters: Hyperparameters | None = None


class Dpo(Strict):
    hyperparameters: DpoHyperparameters | None = None


class Reinforcement(Strict):
    grader: dict
    hyperparameters: ReinforcementHyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None
    reinforcement: Reinforcement | None = None


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
    hyperparameters: Hyperparameters | None = None  # deprecated by OpenAI in favour of method; supervised jobs only
    suffix: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    method: Method | None = None
    metadata: dict[str, str] | None = None
    integrations: list[Integration] | None = None  # recorded on the job; see checked_integrations
    suite: str | None = None  # extension: HOME/suites/NAME.yaml, run after training (serve/suites.py)


def method_and_hyperparameters(body: CreateJob) -> tuple[str, dict]:
    """(method type, every hyperparameter of it as asked: a number or "auto"); a misplaced section is a 400."""
    method = body.method.type if body.method is not None else "supervised"
    for other in ("supervised", "dpo", "reinforcement"):
        if other != method and body.method is not None and getattr(body.method, other) is not None:
            raise APIError(400, f"method.{other} is given but method.type is {method}: put the hyperparameters in "
                                f"method.{method}", param=f"method.{other}", code="invalid_value")
    section = getattr(body.method, method) if body.method is not None else None
    if method == "reinforcement" and section is None:
        raise APIError(400, "a reinforcement job needs method.reinforcement.grader: the grader that scores each "
                            "sampled answer", param="method.reinforcement", code="invalid_value")
    given = section.hyperparameters if section is not None else None
    if given is not None and getattr(given, "reasoning_effort", None) not in (None, "default"):
        raise APIError(400, f"reasoning_effort {given.reasoning_effort!r}: the models this server trains do not reason "
                            "— leave it out or use \"default\"", param="method.reinforcement.hyperparameters.reasoning_effort",
                       code="invalid_value")
    if given is not None and getattr(given, "simpo_gamma", None) is not None and given.loss != "simpo":
        raise APIError(400, "simpo_gamma is SimPO's target margin: it applies with loss \"simpo\" only — set loss to "
                            "\"simpo\" or leave simpo_gamma out", param="method.dpo.hyperparameters.simpo_gamma",
                       code="invalid_value")
    if body.hyperparameters is not None:
        if method != "supervised":
            raise APIError(400, f"hyperparameters (top level, deprecated) apply to supervised jobs: pass a {method} "
                                f"job's in method.{method}.hyperparameters", param="hyperparameters", code="invalid_value")
        given = given or body.hyperparameters  # method.supervised wins where both are given
    values = given.model_dump(exclude_none=True) if given is not None else {}
    return method, requested_hyperparameters(method, values)


def job_grader(request: Request, body: CreateJob, key: str):
    """A reinforcement job's grader, checked as /v1/fine_tuning/alpha/graders/run checks one (a python grader runs in
    every training step, so only where the operator allows python graders); None for other methods."""
    if body.method is None or body.method.type != "reinforcement" or body.method.reinforcement is None:
        return None
    return api_grader(body.method.reinforcement.grader, "method.reinforcement.grader",
                      request.app.state.settings.allow_python_graders, request, key)


def stored_file(request: Request, key: str, file_id: str | None, param: str) -> files.FileRecord | None:
    """The key's file once its data check has finished; a 400 with the row errors when the check refused it."""
    if file_id is None:
        return None
    record = files.get_file(request.app.state.db, key, file_id)
    if record is None:
        raise not_found("file", file_id, param=param)
    if record.purpose != "fine-tune":
        raise APIError(400, f"File {file_id} was uploaded with purpose {record.purpose!r}; a job trains on files "
                            "uploaded with purpose 'fine-tune'.", param=param, code="invalid_file")
    if record.status == "uploaded":
        request.app.state.file_checks.wait(file_id, CHECK_WAIT_SECONDS)
        record = files.get_file(request.app.state.db, key, file_id) or record
    if record.status == "uploaded":
        raise APIError(409, f"File {file_id} is still being checked; create the job once its status is processed "
                            f"(GET /v1/files/{file_id}).", param=param, code="file_not_ready")
    if record.status == "error":
        raise APIError(400, f"File {file_id} failed its data check, so no job can train on it: "
                            f"{record.status_details}", param=param, code="invalid_file")
    return record


def check_method_data(request: Request, method: str, record: files.FileRecord | None, param: str,
                      grader=None) -> None:
    """A dpo job trains on preference pairs, a reinforcement one on prompts with the fields its grader reads, and a
    supervised one on anything else: say which line shows otherwise."""
    if record is None:
        return
    path = files.blob_path(request.app.state.settings.files_dir, record.id, record.filename)
    if method == "reinforcement":
        check_prompt_rows(record, path, grader, param)
        return
    if is_prompt_file(path):
        raise APIError(400, f"File {record.id} ({record.filename}) holds prompts without answers: create the job with "
                            'method {"type": "reinforcement"} and a grader to train on them', param=param,
                       code="invalid_file_format")
    pairs = is_preference_file(path)
    if method == "dpo" and not pairs:
        error = load_preferences(path).errors[0]
        where = f"line {error.line}" + (f", {error.field}" if error.field else "")
        raise APIError(400, f"File {record.id} ({record.filename}) is not preference data, which a dpo job trains on: "
                            f"{where}: {error.message} — {error.hint}", param=param, code="invalid_file_format")
    if method == "supervised" and pairs:
        raise APIError(400, f"File {record.id} ({record.filename}) holds preference pairs: create the job with "
                            f'method {{"type": "dpo"}} to train on them', param=param, code="invalid_file_format")


def check_prompt_rows(record: files.FileRecord, path, grader, param: str) -> None:
    """Every row a prompt (no final answer) with every field the grader's templates read: the first error by line."""
    _, errors = graded_prompt_rows(path, grader)
    if errors:
        error = errors[0]
        where = f"line {error.line}" + (f", {error.field}" if error.field else "")
        raise APIError(400, f"File {record.id} ({record.filename}) is not reinforcement prompts its grader can read, "
                            f"which a reinforcement job trains on: {where}: {error.message} — {error.hint}",
                       param=param, code="invalid_file_format")


def check_job_quota(request: Request, key: ApiKey) -> None:
    """OpenAI's 429 when the key already has its limit of jobs waiting or running (one key must not fill the queue)."""
    limit = key.max_queued_jobs or request.app.state.settings.max_queued_jobs
    waiting = jobs.count_waiting_or_running(request.app.state.db, key.id)
    if waiting >= limit:
        raise rate_limited("requests", f"Rate limit reached for {key.id} on fine-tuning jobs waiting or running: "
                           f"limit {limit}, current {waiting}. Wait for one to finish or cancel one.",
                           60)


@router.post("")
def create_job(request: Request, body: CreateJob, calling: ApiKey = Depends(calling_key)):
    key = calling.id
    check_job_quota(request, calling)
    bases = request.app.state.settings.base_models()
    if body.model not in bases and models.get_model(request.app.state.db, key, body.model) is None:
        raise APIError(404, f"Model {body.model} is neither a base model this server fine-tunes "
                            f"(served: {', '.join(bases)}) nor one of your fine-tuned models (ft:...).",
                       param="model", code="model_not_found")
    method, hyperparameters = method_and_hyperparameters(body)
    grader = job_grader(request, body, key)
    for file_id, param in ((body.training_file, "training_file"), (body.validation_file, "validation_file")):
        check_method_data(request, method, stored_file(request, key, file_id, param), param, grader)
    suites = available_suites(request.app.state.settings)
    if body.suite is not None and body.suite not in suites:
        raise APIError(400, f"suite: no suite {body.suite!r} on this server — use one of {', '.join(suites) or 'none'} "
                            f"(files NAME.yaml in {request.app.state.settings.suites_dir}), or leave it out for the "
                            "quick evaluation", param="suite", code="invalid_value")
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    job = jobs.create_job(request.app.state.db, key, body.model, body.training_file, body.validation_file,
                          hyperparameters, body.suffix, seed, body.metadata,
                          integrations=checked_integrations(body.integrations), method=method, suite=body.suite,
                          grader=grader.spec() if grader is not None else None)
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
