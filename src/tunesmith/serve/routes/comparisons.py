"""POST /ui/api/comparisons {"a", "b", "suite", "limit"}, GET /ui/api/comparisons (the key's, newest first, without
their reports) and GET /ui/api/comparisons/{id} (extension endpoints): two of the key's models (bases, fine-tunes,
versions) compared on a server suite, A before and B after; kept in the registry across restarts.

Run as: tunesmith serve --home DIR with suites in DIR/suites; the web UI's models page calls these.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.serve.auth import api_key
from tunesmith.registry import comparisons
from tunesmith.registry.comparisons import ComparisonRunning
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.routes.models import served_model_ref
from tunesmith.serve.suites import available_suites

router = APIRouter(prefix="/ui/api/comparisons")


class CompareModels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: str = Field(description="The baseline: its answers are the report's 'before'.")
    b: str = Field(description="The candidate: its answers are the report's 'after'.")
    suite: str
    limit: int | None = Field(None, ge=1, description="The first N items of each task (a quick look).")


@router.post("")
def start_comparison(request: Request, body: CompareModels, key: str = Depends(api_key)):
    settings = request.app.state.settings
    suite = available_suites(settings).get(body.suite)
    if suite is None:
        raise APIError(400, f"suite: no suite {body.suite!r} on this server — put NAME.yaml in {settings.suites_dir}",
                       param="suite", code="invalid_value")
    refs = []
    for param in ("a", "b"):
        try:
            refs.append(served_model_ref(request, key, getattr(body, param)))
        except APIError as exc:
            exc.param = param
            raise
    try:
        comparison = request.app.state.comparisons.start(key, (body.a, body.b), tuple(refs), body.suite, suite, body.limit)
    except ComparisonRunning as exc:
        raise APIError(409, f"Comparison {exc} is still running; wait for it to finish.", code="comparison_running") from None
    return comparison.to_json()


@router.get("")
def list_comparisons(request: Request, key: str = Depends(api_key)):
    found = comparisons.list_comparisons(request.app.state.db, key)
    return {"object": "list", "data": [c.to_json(with_report=False) for c in found]}


@router.get("/{comparison_id}")
def get_comparison(request: Request, comparison_id: str, key: str = Depends(api_key)):
    comparison = comparisons.get_comparison(request.app.state.db, key, comparison_id)
    if comparison is None:
        raise not_found("comparison", comparison_id, param="comparison_id")
    return comparison.to_json()
