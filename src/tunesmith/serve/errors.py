"""OpenAI's error shape, {"error": {"message", "type", "param", "code"}}, for every failure the API returns."""
from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("tunesmith.serve")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "requests", 500: "server_error", 507: "server_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        """`type` overrides the status's usual error type (a 429's names what ran out: requests or tokens)."""
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type, self.headers = type, headers


def not_found(kind: str, object_id: str, param: str | None = None) -> APIError:
    """The same answer whether the object never existed or belongs to another key."""
    return APIError(404, f"No such {kind}: {object_id}", param=param, code=f"{kind.replace(' ', '_')}_not_found")


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None, type: str | None = None) -> JSONResponse:
    body = error_body(APIError(status, message, param, code, type))
    return JSONResponse(body, status_code=status, headers=headers)


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), a file write's ENOSPC/EDQUOT, or a library's error that
    wraps one in its message (safetensors: "No space left on device (os error 28)")."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left on device" in str(exc)


LOW_DISK_BYTES = 1 << 20  # less free space than this where a job writes: its failure is put down to the disk


def out_of_space_message(directory: Path) -> str:
    free = shutil.disk_usage(directory).free
    return (f"the server ran out of disk space while training ({free // (1 << 20)} MiB free where jobs are written); "
            "its completed checkpoints are kept. Free space, then create the job again.")


def disk_full() -> APIError:
    return APIError(507, "The server is out of disk space: nothing was changed. Try again once the operator has "
                         "freed space.", code="insufficient_storage")


def invalid_value(errors: list[dict]) -> APIError:
    """The 400 for a body that fails its pydantic model (FastAPI's RequestValidationError or pydantic's own
    ValidationError `.errors()`), naming the first wrong field."""
    first = errors[0]
    location = [str(part) for part in first["loc"] if part not in ("body", "query", "path")]
    param = ".".join(location) or None
    if first["type"] == "extra_forbidden":  # OpenAI's answer to a field it does not know
        return APIError(400, f"Unknown parameter: '{param}'.", param, "unknown_parameter")
    return APIError(400, f"Invalid value for {param or 'request'}: {first['msg']}", param, "invalid_value")


def error_body(error: APIError) -> dict:
    return {"error": {"message": error.message, "type": error.type or ERROR_TYPES.get(error.status, "invalid_request_error"),
                      "param": error.param, "code": error.code}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers, exc.type)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        error = invalid_value(exc.errors())
        return error_response(error.status, error.message, error.param, error.code)

    @app.exception_handler(sqlite3.OperationalError)
    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: Exception):
        """A full disk is the operator's to fix and the client's to retry: 507, not a 500. (A failed registry
        transaction is rolled back, registry/db.py, so once space returns the next write succeeds.)"""
        if not is_disk_full(exc):
            raise exc
        log.error("out of disk space on %s %s: %s", request.method, request.url.path, exc)
        error = disk_full()
        return error_response(error.status, error.message, code=error.code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"The server had an error processing the request ({type(exc).__name__}).")
