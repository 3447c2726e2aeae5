"""The web UI: static pages under /ui (no network assets) plus the two reports the OpenAI API has no route for.

Run as: tunesmith serve --home DIR, then open http://127.0.0.1:8000/ui and paste an API key once.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse

from tunesmith.registry import files, jobs
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import not_found
from tunesmith.serve.file_checks import CHECK_WAIT_SECONDS
from tunesmith.serve.worker import job_dir

router = APIRouter(prefix="/ui")
UI_DIR = Path(__file__).resolve().parents[1] / "ui"
MEDIA = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# names are looked up in this table, never joined onto a path from the request
ASSETS = {p.name: p for p in UI_DIR.iterdir() if p.suffix in MEDIA} if UI_DIR.is_dir() else {}
EVAL_REPORTS = ("run/eval/report.json", "eval/report.json")  # `tunesmith eval --out HOME/jobs/ID/run/eval`
# no network assets, and no framing by another site (clickjacking: the pages act with the key pasted into them)
NO_NETWORK = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"}


@router.get("")
def index():
    return FileResponse(ASSETS["index.html"], media_type="text/html", headers=NO_NETWORK)


@router.get("/")
def index_slash():
    return RedirectResponse("/ui")


@router.get("/assets/{name}")
def asset(name: str):
    path = ASSETS.get(name)
    if path is None:
        raise not_found("asset", name)
    return FileResponse(path, media_type=MEDIA[path.suffix], headers=NO_NETWORK)


@router.get("/api/files/{file_id}/check")
def file_check(request: Request, file_id: str, key: str = Depends(api_key)):
    """The data-check report stored for an uploaded file (waiting a little for a check still running), with the
    file's status and, for a refused file, its row errors."""
    if files.get_file(request.app.state.db, key, file_id) is None:
        raise not_found("file", file_id, param="file_id")
    request.app.state.file_checks.wait(file_id, CHECK_WAIT_SECONDS)
    record = files.get_file(request.app.state.db, key, file_id)
    if record is None:
        raise not_found("file", file_id, param="file_id")
    return {"id": record.id, "filename": record.filename, "report": record.report, "status": record.status,
            "status_details": record.status_details}


@router.get("/api/jobs/{job_id}/model-card")
def job_model_card(request: Request, job_id: str, key: str = Depends(api_key)):
    """The README.md model card of the job's model (written at export, again after an evaluation), or 404."""
    if jobs.get_job(request.app.state.db, job_id, owner=key) is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    card = job_dir(request.app.state.settings, job_id) / "run" / "model" / "README.md"
    if not card.is_file():
        raise not_found("model card", job_id, param="fine_tuning_job_id")
    return {"text": card.read_text()}


@router.get("/api/jobs/{job_id}/evaluation")
def job_evaluation(request: Request, job_id: str, key: str = Depends(api_key)):
    """report.json of an evaluation run on the job's model, or 404 when there is none."""
    if jobs.get_job(request.app.state.db, job_id, owner=key) is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    directory = job_dir(request.app.state.settings, job_id)
    for name in EVAL_REPORTS:
        if (directory / name).is_file():
            return json.loads((directory / name).read_text())
    raise not_found("evaluation report", job_id, param="fine_tuning_job_id")
