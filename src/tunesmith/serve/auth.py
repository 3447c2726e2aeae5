"""Bearer API keys: every /v1 request names its key; handlers receive the key id and act for it only."""
from __future__ import annotations

from fastapi import Request

from tunesmith.registry.keys import authenticate
from tunesmith.serve.errors import APIError


def api_key(request: Request) -> str:
    """FastAPI dependency: the calling key's id, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise APIError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                            "(create one with: tunesmith keys create --home DIR).", code="missing_api_key")
    key_id = authenticate(request.app.state.db, secret.strip())
    if key_id is None:
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    return key_id
