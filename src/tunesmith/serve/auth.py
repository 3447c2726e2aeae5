"""Bearer API keys: every /v1 request names its key; handlers receive the key id and act for it only.

The key is checked by the request gate (serve/gate.py) before the body is read, and so is its scope (what
the key may do, registry/keys.py SCOPES); `api_key` hands the key's id to the route, `calling_key` the key.
"""
from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from tunesmith.registry.db import Database
from tunesmith.registry.keys import SCOPES, ApiKey, find_key
from tunesmith.serve.errors import APIError

KEYED_PREFIXES = ("/v1/", "/ui/api/", "/openapi.json")  # everything else: /health and the UI's static pages
INFERENCE_ROUTES = {("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/moderations"),
                    ("POST", "/v1/responses")}
OWN_STATE = ("/v1/responses/", "/v1/conversations")  # an inference key keeps its responses and conversations
READS = ("GET", "HEAD")


def key_from_header(db: Database, header: str) -> ApiKey:
    """The key for an `Authorization: Bearer KEY` header, or a 401."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise APIError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                            "(create one with: tunesmith keys create --home DIR).", code="missing_api_key")
    key = find_key(db, secret.strip())
    if key is None:
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    return key


def check_scope(key: ApiKey, method: str, path: str) -> None:
    """403 unless the key's scope allows the request: fine-tune everything, inference-only generation and
    reads, read-only reads."""
    inference = (method, path) in INFERENCE_ROUTES or (method in ("POST", "DELETE") and path.startswith(OWN_STATE))
    if key.scope == "fine-tune" or method in READS or (key.scope == "inference-only" and inference):
        return
    needed = "inference-only or fine-tune" if inference else "fine-tune"
    raise APIError(403, f"This key's scope is {key.scope} ({SCOPES[key.scope]}); {method} {path} needs {needed} — "
                        f"ask the operator (tunesmith keys scope {key.id} {needed.split()[-1]} --home DIR).",
                   code="insufficient_scope")


async def calling_key(request: Request) -> ApiKey:
    """FastAPI dependency: the calling key (checked by the gate), or 401. Async, so that handing over the key the
    gate found costs no trip through the thread pool (each trip waits for a free thread under load)."""
    checked = getattr(request.state, "key", None)
    if checked is not None:
        return checked
    return await run_in_threadpool(key_from_header, request.app.state.db, request.headers.get("authorization", ""))


async def api_key(request: Request) -> str:
    """FastAPI dependency: the calling key's id, or 401."""
    return (await calling_key(request)).id
