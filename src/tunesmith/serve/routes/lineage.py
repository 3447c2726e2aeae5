"""GET /v1/models/{id}/lineage (extension): base → parents → the model, with data files and evaluations.

A fine-tuned model object also carries the short form as the extension field `lineage` (shapes.py): its
base with the weights' digest, its parent model, its data (file ids and digests) and evaluation verdicts.
Both are read from the run's run.json (registry/lineage.py); the registry only names runs and files.
This router is included before /v1/models' catch-all `{model_id:path}` routes, so `/lineage` reaches it.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request

from tunesmith.registry import models
from tunesmith.registry.lineage import Lineage, LineageError, lineage, registry_file_ids, registry_names
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import not_found

router = APIRouter(prefix="/v1/models")


def model_lineage(request: Request, key: str, model: models.FineTunedModel) -> Lineage | None:
    """None when the run directory is gone (erased, or expired by retention)."""
    db = request.app.state.db
    try:
        return lineage(Path(model.run_dir), registry_names(db, key), registry_file_ids(db, key))
    except LineageError:
        return None


def lineage_field(request: Request, key: str, model: models.FineTunedModel) -> dict | None:
    """The short form for the model object: this model's own step of the chain, its base and its parent."""
    found = model_lineage(request, key, model)
    if found is None:
        return None
    own = found.chain[-1].summary(found.file_ids)
    parent = found.chain[-2] if len(found.chain) > 1 else None
    return {"base_model": found.chain[0].record.get("base_model"),
            "base_model_sha256": found.chain[0].record.get("base_model_sha256"),
            "parent": (parent.model_id or str(parent.run_dir)) if parent else None,
            "data": [{key_: d[key_] for key_ in ("role", "file_id", "sha256", "rows")} for d in own["data"]],
            "evaluations": [{"suite": e["suite"], "passed": e["passed"]} for e in own["evaluations"]],
            "started_by": own["started_by"], "started_at": own["started_at"], "finished_at": own["finished_at"]}


@router.get("/{model_id:path}/lineage")
def get_lineage(request: Request, model_id: str, key: str = Depends(api_key)):
    model = models.get_model(request.app.state.db, key, model_id)
    if model is None:
        raise not_found("model", model_id, param="model")
    found = model_lineage(request, key, model)
    if found is None:
        raise not_found("lineage record (run.json) of model", model_id, param="model")
    return {"object": "model.lineage", "id": model_id, **found.to_json()}
