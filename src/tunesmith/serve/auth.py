"""Bearer API keys: every /v1 request names its key; handlers receive the key id and act for it only.

The key is checked by the request gate (serve/gate.py) before the body is read; `api_key` hands its id to
the route.
"""
from __future__ import annotations

from fastapi import Request

from tunesmith.registry.db import Database
from tunesmith.registry.keys import authenticate
from tunesmith.serve.errors import APIError

KEYED_PREFIXES = ("/v1/", "/ui/api/", "/openapi.json")  # everything else: /health and the UI's static pages


def key_from_header(db: Database, header: str) -> str:
    """The key id for an `Authorization: Bearer KEY` header, or a 401."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise APIError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                            "(create one with: tunesmith keys create --home DIR).", code="missing_api_key")
    key_id = authenticate(db, secret.strip())
    if key_id is None:
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    return key_id


def api_key(request: Request) -> str:
    """FastAPI dependency: the calling key's id (checked by the gate), or 401."""
    checked = getattr(request.state, "api_key", None)
    return checked if checked is not None else key_from_header(request.app.state.db,
                                                               request.headers.get("authorization", ""))
