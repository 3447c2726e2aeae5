"""What the web UI shows before a job starts (extension endpoints under /ui/api, same Bearer keys as /v1):

- POST /ui/api/data-check (multipart `file`, optional `model`): the full data check of a file, stored or not —
  row errors by line, PII findings, token statistics with a length histogram, the trained-token preview —
  with the tokenizer of the model the job would train. Nothing is kept.
- GET /ui/api/files/{id}/data-check?model=M: the same for an uploaded file.
- POST /ui/api/estimate (a job-creation body): the hyperparameters with each "auto" resolved as the worker
  will resolve it, and the cost estimate (time, peak memory) of that run on this machine.
- GET /ui/api/suites: the evaluation suites a job may name (HOME/suites/NAME.yaml).

Run as: tunesmith serve --home DIR, then open http://127.0.0.1:8000/ui.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from tunesmith.config import DataConfig
from tunesmith.data.check import DataReport, check_data
from tunesmith.data.line_screen import screen_lines
from tunesmith.estimate.estimate import estimate_config
from tunesmith.estimate.hardware import GPUS
from tunesmith.models.load import load_tokenizer
from tunesmith.registry import files, models
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.hyperparameters import resolve_hyperparameters
from tunesmith.serve.job_config import job_run_config
from tunesmith.serve.gate import MULTIPART_OVERHEAD
from tunesmith.serve.routes.files import owned_file, save_upload, too_large
from tunesmith.serve.routes.jobs import CreateJob, check_method_data, job_grader, method_and_hyperparameters, stored_file
from tunesmith.serve.suites import available_suites, suite_summary
from tunesmith.serve.worker import training_rows

router = APIRouter(prefix="/ui/api")


@lru_cache(maxsize=4)
def cached_tokenizer(ref: str):
    return load_tokenizer(ref)


def base_ref(request: Request, key: str, model: str | None) -> str:
    """The base a job on `model` trains (a fine-tuned model's root base); the first served base when none is named."""
    bases = request.app.state.settings.base_models()
    if not model:
        return next(iter(bases.values()))
    root = models.tuned_base(request.app.state.db, key, model) if model not in bases else model
    if root not in bases:
        raise APIError(404, f"model: {model} is neither a served base ({', '.join(bases)}) nor one of your "
                            "fine-tuned models", param="model", code="model_not_found")
    return bases[root]


def full_check(path: Path, name: str, tokenizer_ref: str, max_row_bytes: int) -> dict:
    """check_data with the tokenizer and the length jobs train with; the report names the file as the user did.
    Lines the upload's screen refuses (huge, not UTF-8, nested too deep) are reported alone, as the upload does."""
    screened = screen_lines(path, name, max_row_bytes)
    if screened:
        return {"ok": False, "files": [], "errors": [asdict(error) for error in screened], "warnings": [], "pii": [],
                "token_stats": [], "preview": None}
    report: DataReport = check_data(path, tokenizer=cached_tokenizer(tokenizer_ref), max_length=DataConfig().max_length)
    return json.loads(report.model_dump_json().replace(json.dumps(str(path))[1:-1], json.dumps(name)[1:-1]))


@router.post("/data-check")
async def data_check(request: Request, key: str = Depends(api_key)):
    settings = request.app.state.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + MULTIPART_OVERHEAD:
        raise too_large(settings.max_upload_bytes)
    form = await request.form(max_files=1, max_fields=4)
    upload, model = form.get("file"), form.get("model")
    if not isinstance(upload, UploadFile):
        raise APIError(400, "Missing file: send it as the multipart field 'file'.", param="file")
    ref = base_ref(request, key, model if isinstance(model, str) else None)
    settings.files_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.files_dir / f".check-{secrets.token_hex(12)}.jsonl"
    try:
        await run_in_threadpool(save_upload, upload.file, staging, settings.max_upload_bytes)
        return await run_in_threadpool(full_check, staging, Path(upload.filename or "upload.jsonl").name, ref,
                                       settings.max_row_bytes)
    finally:
        staging.unlink(missing_ok=True)


@router.get("/files/{file_id}/data-check")
async def stored_file_check(request: Request, file_id: str, model: str | None = None, key: str = Depends(api_key)):
    record = owned_file(request, key, file_id)
    path = files.blob_path(request.app.state.settings.files_dir, record.id, record.filename)
    return await run_in_threadpool(full_check, path, record.filename, base_ref(request, key, model),
                                   request.app.state.settings.max_row_bytes)


def this_machine() -> str:
    """The estimator's name for where jobs train: the GPU table's entry for the CUDA device, else this CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    device = torch.cuda.get_device_name().lower()
    return next((name for name in sorted(GPUS, key=len, reverse=True) if name.split("-")[0] in device), "cpu")


def scenario_json(estimate) -> dict:
    """The config's own scenario (the first): what this job would cost."""
    scenario = estimate.scenarios[0]
    return {"label": scenario.label, "steps": scenario.steps, "tokens": scenario.tokens,
            "train_seconds": scenario.train_seconds, "total_seconds": scenario.total_seconds,
            "peak_memory_bytes": scenario.peak_memory_bytes, "memory": scenario.memory,
            "hardware": estimate.hardware.description, "memory_bytes_available": estimate.hardware.memory_bytes,
            "train_examples": estimate.train_examples, "notes": estimate.notes}


@router.post("/estimate")
async def estimate_job(request: Request, body: CreateJob, key: str = Depends(api_key)):
    settings, db = request.app.state.settings, request.app.state.db
    base_ref(request, key, body.model)  # 404 for a model the key may not train
    method, requested = method_and_hyperparameters(body)
    grader = job_grader(request, body, key)
    train = await run_in_threadpool(stored_file, request, key, body.training_file, "training_file")  # waits for its check
    valid = await run_in_threadpool(stored_file, request, key, body.validation_file, "validation_file")
    for record, param in ((train, "training_file"), (valid, "validation_file")):
        check_method_data(request, method, record, param, grader)
    resolved = resolve_hyperparameters(requested, training_rows(train, settings.files_dir))
    valid_path = files.blob_path(settings.files_dir, valid.id, valid.filename) if valid else None
    config = job_run_config(settings, db, owner=key, model=body.model, method=method, train_path=files.blob_path(
                                settings.files_dir, train.id, train.filename), valid_path=valid_path,
                            hyperparameters=resolved, seed=body.seed or 0,
                            out=settings.jobs_dir / "estimate", grader=grader.spec() if grader is not None else None)
    try:
        estimate = await run_in_threadpool(estimate_config, config, this_machine(),
                                           runtime_bytes=request.app.state.runtime_bytes)
    except Exception as exc:  # noqa: BLE001 — the estimate is advice: the form still shows the hyperparameters
        return {"hyperparameters": resolved, "requested": requested, "estimate": None,
                "estimate_error": f"{type(exc).__name__}: {exc}"}
    return {"hyperparameters": resolved, "requested": requested, "estimate": scenario_json(estimate)}


@router.get("/suites")
def list_suites(request: Request, key: str = Depends(api_key)):
    return {"object": "list", "data": [suite_summary(name, path) for name, path
                                       in available_suites(request.app.state.settings).items()]}


def owned_model(request: Request, key: str, model_id: str) -> models.FineTunedModel:
    model = models.get_model(request.app.state.db, key, model_id)
    if model is None:
        raise not_found("model", model_id, param="model")
    return model


@router.get("/models/{model_id:path}/evaluation")
def model_evaluation(request: Request, model_id: str, key: str = Depends(api_key)):
    """report.json of the evaluation after the fine-tuned model's job, for the models page's comparison."""
    report = Path(owned_model(request, key, model_id).run_dir) / "eval" / "report.json"
    if not report.is_file():
        raise not_found("evaluation report of model", model_id, param="model")
    return json.loads(report.read_text())


@router.get("/models/{model_id:path}/model-card")
def model_card(request: Request, model_id: str, key: str = Depends(api_key)):
    card = Path(owned_model(request, key, model_id).run_dir) / "model" / "README.md"
    if not card.is_file():
        raise not_found("model card of model", model_id, param="model")
    return {"text": card.read_text()}
