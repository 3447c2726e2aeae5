"""/v1/batches (OpenAI's Batch API): create a batch from an uploaded file of requests, list, retrieve, cancel.

The requests run in the background (serve/batches.py); the batch's output and error files are read with
/v1/files/{id}/content like any file.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tunesmith.registry import batches, files
from tunesmith.serve.auth import api_key
from tunesmith.serve.batch_file import ENDPOINTS
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.shapes import batch_object, list_object

router = APIRouter(prefix="/v1/batches")
CANCELLABLE = ("validating", "in_progress")


class BatchCreate(BaseModel):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = Field(None, max_length=16)  # OpenAI's limit: 16 pairs


def created_batch(request: Request, key: str, body: BatchCreate) -> batches.Batch:
    if body.endpoint not in ENDPOINTS:
        raise APIError(400, f"Invalid endpoint {body.endpoint!r}: batches go to {' or '.join(ENDPOINTS)}.",
                       param="endpoint", code="invalid_value")
    if body.completion_window not in batches.COMPLETION_WINDOW_SECONDS:
        raise APIError(400, f"Invalid completion_window {body.completion_window!r}: the window is "
                            f"{', '.join(batches.COMPLETION_WINDOW_SECONDS)}.", param="completion_window",
                       code="invalid_value")
    record = files.get_file(request.app.state.db, key, body.input_file_id)
    if record is None:
        raise not_found("file", body.input_file_id, param="input_file_id")
    if record.purpose != "batch":
        raise APIError(400, f"File {record.id} was uploaded with purpose {record.purpose!r}; a batch's input is "
                            "uploaded with purpose 'batch'.", param="input_file_id", code="invalid_value")
    return batches.create_batch(request.app.state.db, key, body.endpoint, record.id, body.completion_window,
                                body.metadata)


def owned_batch(request: Request, key: str, batch_id: str) -> batches.Batch:
    batch = batches.get_batch(request.app.state.db, key, batch_id)
    if batch is None:
        raise not_found("batch", batch_id, param="batch_id")
    return batch


@router.post("")
async def create_batch(request: Request, body: BatchCreate, key: str = Depends(api_key)):
    batch = await run_in_threadpool(created_batch, request, key, body)
    request.app.state.batches.notify()
    return batch_object(batch)


@router.get("")
def list_batches(request: Request, after: str | None = None, limit: int = 20, key: str = Depends(api_key)):
    found, more = batches.list_batches(request.app.state.db, key, after, max(1, min(limit, 100)))
    return list_object([batch_object(batch) for batch in found], more)


@router.get("/{batch_id}")
def retrieve_batch(request: Request, batch_id: str, key: str = Depends(api_key)):
    return batch_object(owned_batch(request, key, batch_id))


@router.post("/{batch_id}/cancel")
def cancel_batch(request: Request, batch_id: str, key: str = Depends(api_key)):
    """cancelling at once; cancelled once the requests already generating have finished (their answers are kept
    in the output file)."""
    batch = owned_batch(request, key, batch_id)
    if not batches.move(request.app.state.db, batch, "cancelling", only_from=CANCELLABLE):
        raise APIError(409, f"Batch {batch_id} is {owned_batch(request, key, batch_id).status}: only a validating "
                            "or in_progress batch can be cancelled.", param="batch_id", code="invalid_state")
    request.app.state.batches.notify(cancelled=batch.id)
    return batch_object(batch)
