"""/v1/files: upload (size-capped, screened line by line, the key's PII policy applied, then recorded as
`uploaded` and answered; the full data check runs off the request path, serve/file_checks.py), list, retrieve, content, delete (an erasure: it reports, and with `?delete_models=true` deletes, the
models made from the file)."""
from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from tunesmith.data.hashing import file_sha256
from tunesmith.data.line_screen import blank_lines, screen_lines
from tunesmith.data.pii_policy import PersonalDataRefused, PiiOutcome, apply_pii_policy
from tunesmith.data.redact import RedactionError
from tunesmith.registry import audit, files, keys
from tunesmith.registry.erasure import erase_data
from tunesmith.evaluate.eval_data import EvalDataError, rows_from_file
from tunesmith.registry.file_readers import unfinished_readers
from tunesmith.registry.lineage import registry_names
from tunesmith.serve.auth import api_key
from tunesmith.serve.batch_file import check_batch_input
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.file_checks import row_errors_message
from tunesmith.serve.shapes import file_object, list_object
from tunesmith.serve.training_file import check_training_file

router = APIRouter(prefix="/v1/files")
# batch: a batch's requests (serve/batch_file.py); evals: an eval run's rows (evaluate/eval_data.py); batch_output
# is ours to write
PURPOSES = {"fine-tune", "batch", "evals"}
CHECKED_AT_UPLOAD = ("batch", "evals")  # small work, checked line by line in the request: processed at once
CHUNK = 1 << 20
PII_REMEDY = ("redact it (tunesmith data redact IN OUT) and upload the copy, or ask the operator to set this key's "
              "policy to redact or allow (tunesmith keys pii KEY_ID redact)")


def remove_staging_files(files_dir: Path) -> list[str]:
    """Staging files (dot-named: `.part-*`, `.redacted-*`, `.screened-*`, the UI's `.check-*`) belong to requests
    in flight; at startup none is, so any found was left by a killed server. Returns the names removed."""
    removed = []
    for path in files_dir.glob(".*") if files_dir.is_dir() else []:
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def too_large(limit: int) -> APIError:
    return APIError(413, f"File too large: the limit is {limit} bytes.", param="file", code="file_too_large")


def save_upload(upload: BinaryIO, target: Path, limit: int) -> int:
    """Copy the parsed upload (starlette's spooled copy of the part) to `target`, refusing it past `limit` bytes;
    returns the size. (The request gate has already cut the body off past the cap plus the multipart overhead,
    chunked or not; this is the exact cap on the file.)"""
    size = 0
    upload.seek(0)
    with open(target, "wb") as handle:
        while chunk := upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            handle.write(chunk)
    return size


def invalid_file(filename: str, errors: list[dict]) -> APIError:
    return APIError(400, row_errors_message(filename, [{**e, "file": filename} for e in errors]), param="file",
                    code="invalid_file")


@router.post("")
async def upload_file(request: Request, key: str = Depends(api_key)):
    """Staging files (`.part-*`, `.redacted-*`) never outlive the request, whatever fails; a full disk is a 507."""
    settings = request.app.state.settings
    async with request.form(max_files=1, max_fields=8) as form:
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in PURPOSES:
            raise APIError(400, f"Invalid purpose {purpose!r}: expected one of {sorted(PURPOSES)}.", param="purpose")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "Missing file: send it as the multipart field 'file'.", param="file")
        filename = os.path.basename(upload.filename or "") or "upload.jsonl"
        file_id = files.new_file_id()
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        target = files.blob_path(settings.files_dir, file_id, filename)
        staging = target.with_name(f".part-{target.name}")
        try:
            return await store_upload(request, key, file_id, filename, purpose, upload, staging, target)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise APIError(507, "The server is out of disk space: the file was not stored. Try again later.",
                               param="file", code="insufficient_storage") from None
            raise
        finally:
            staging.unlink(missing_ok=True)
            redacted_path(staging).unlink(missing_ok=True)
            screened_path(staging).unlink(missing_ok=True)


async def store_upload(request: Request, key: str, file_id: str, filename: str, purpose: str, upload: UploadFile,
                       staging: Path, target: Path) -> dict:
    """Stage, screen, apply the PII policy and record, in one trip through the thread pool (`stored_upload`), then
    queue the full data check (its outcome becomes the file's status: processed, or error with the row errors).

    One trip, not one per stage: under load each trip waits for a free thread and the GIL, and those waits, not
    the work (under 2 ms for a small file), made the upload's p99 (benchmarks/serve_load.py). The registry write
    is in that trip too: on the event loop it would stall every request while another thread held the database."""
    record = await run_in_threadpool(stored_upload, request.app.state, key, file_id, filename, purpose, upload.file,
                                     staging, target)
    if record.status == "uploaded":
        request.app.state.file_checks.submit(record)
    return file_object(record)


def stored_upload(state, key: str, file_id: str, filename: str, purpose: str, upload: BinaryIO, staging: Path,
                  target: Path) -> files.FileRecord:
    """Stage, screen line by line, apply the key's PII policy, then move into place and record: as `uploaded` (its
    data check follows), or a batch's requests as `processed` (checked here, line by line: it is small work)."""
    size = save_upload(upload, staging, state.settings.max_upload_bytes)
    screen_upload(state.settings.max_row_bytes, staging, filename)
    if purpose == "batch" and (errors := check_batch_input(staging).errors):
        raise invalid_file(filename, errors)
    if purpose == "evals":
        try:
            rows_from_file(staging, filename)
        except EvalDataError as error:
            raise APIError(400, f"Invalid file {filename}: {error}", param="file", code="invalid_file") from None
    try:
        outcome = apply_key_policy(state.db, key, file_id, filename, staging)
    except RedactionError as error:  # rows the PII scan cannot read (not JSON objects): the full check names them
        report = check_training_file(staging)
        if report.ok:
            raise APIError(400, f"Invalid file {filename}: " + str(error).replace(str(staging), filename),
                           param="file", code="invalid_file") from None
        raise invalid_file(filename, report.errors) from None
    if outcome.policy == "redact":  # the redacted copy is what is stored, checked and served back
        os.replace(outcome.path, staging)
        size = staging.stat().st_size
    digest = file_sha256(staging)
    os.replace(staging, target)
    try:
        return files.add_file(state.db, file_id, key, filename, purpose, size, {"pii_policy": outcome.summary()},
                              sha256=digest, status="processed" if purpose in CHECKED_AT_UPLOAD else "uploaded",
                              pii_policy=outcome.policy,
                              pii_findings=outcome.findings)
    except BaseException:
        target.unlink(missing_ok=True)  # not recorded: no one could ever see or delete it
        raise


def screen_upload(limit: int, staging: Path, filename: str) -> None:
    """A 400 naming each line the line-by-line screen refuses (huge lines, bytes that are not UTF-8, nesting past
    the parser), with the other lines' row errors beside them; the full check never loads such a line."""
    screened = screen_lines(staging, filename, limit)
    if screened:
        raise invalid_file(filename, screened_and_row_errors(staging, screened, limit))


def screened_and_row_errors(path: Path, screened: list, limit: int) -> list[dict]:
    """The screened lines' errors and the other lines' row errors, by line; the other lines are checked from a
    copy with the screened ones emptied."""
    rest = screened_path(path)
    try:
        blank_lines(path, rest, {error.line for error in screened}, limit)
        others = [e for e in check_training_file(rest).errors if e["line"] > 0]
    finally:
        rest.unlink(missing_ok=True)
    return sorted([asdict(error) for error in screened] + others, key=lambda e: e["line"])


def redacted_path(staging: Path) -> Path:
    return staging.with_name(f".redacted-{staging.name}")


def screened_path(staging: Path) -> Path:
    return staging.with_name(f".screened-{staging.name}")


def apply_key_policy(db, key: str, file_id: str, filename: str, staging: Path) -> PiiOutcome:
    """The key's PII policy on the staged upload: a refusal is a 400 listing the findings by line (audited)."""
    policy = keys.pii_policy(db, key)
    try:
        return apply_pii_policy(staging, policy, redacted_path(staging), PII_REMEDY, filename)
    except PersonalDataRefused as exc:
        audit.append(db, key, "file.upload_refused", file_id, outcome="refused: personal data", filename=filename,
                     findings=dict(Counter(f.kind for f in exc.findings)))
        raise APIError(400, str(exc), param="file", code="personal_data") from None


@router.get("")
def list_files(request: Request, purpose: str | None = None, after: str | None = None, limit: int = 10000,
               key: str = Depends(api_key)):
    records, more = files.list_files(request.app.state.db, key, purpose, after, max(1, min(limit, 10000)))
    return list_object([file_object(r) for r in records], more)


def owned_file(request: Request, key: str, file_id: str) -> files.FileRecord:
    record = files.get_file(request.app.state.db, key, file_id)
    if record is None:
        raise not_found("file", file_id, param="file_id")
    return record


@router.get("/{file_id}")
def retrieve_file(request: Request, file_id: str, key: str = Depends(api_key)):
    return file_object(owned_file(request, key, file_id))


@router.get("/{file_id}/content")
def file_content(request: Request, file_id: str, key: str = Depends(api_key)):
    record = owned_file(request, key, file_id)
    path = files.blob_path(request.app.state.settings.files_dir, record.id, record.filename)
    return FileResponse(path, media_type="application/octet-stream")


@router.delete("/{file_id}")
def delete_file(request: Request, file_id: str, delete_models: bool = False, key: str = Depends(api_key)):
    """Erase the file; the answer adds (extension fields) the models trained on its content, directly or
    through a parent, those deleted with `?delete_models=true`, and the eval runs over its rows (deleted with it:
    their output items copy the rows)."""
    record = owned_file(request, key, file_id)
    db, files_dir = request.app.state.db, request.app.state.settings.files_dir
    readers = {kind: ids for kind, ids in unfinished_readers(db, key, file_id).items() if ids}
    if users := [id_ for ids in readers.values() for id_ in ids]:
        audit.append(db, key, "file.deleted", file_id, outcome=f"refused: read by unfinished {' and '.join(readers).replace('_', ' ')}",
                     **readers)
        raise APIError(409, f"File {file_id} is used by unfinished job(s), batch(es) or eval run(s) {', '.join(users)}; cancel them "
                            "first.",
                       param="file_id", code="file_in_use")
    blob = files.blob_path(files_dir, record.id, record.filename)
    digest = record.sha256 or (file_sha256(blob) if blob.is_file() else None)  # files stored before digests were kept
    if digest is None:
        files.delete_file(db, key, file_id)
        return {"id": file_id, "object": "file", "deleted": True, "trained_models": [], "deleted_models": []}
    names = registry_names(db, key)
    report = erase_data(digest, list(names), actor=key, names=names, db=db, stored=[record], files_dir=files_dir,
                        delete_models=delete_models)
    for model_id in report.deleted_models:
        request.app.state.pool.drop(model_id)
    return {"id": file_id, "object": "file", "deleted": True,
            "trained_models": [item.to_json() for item in report.trained], "deleted_models": report.deleted_models,
            "deleted_eval_runs": report.deleted_eval_runs}
