"""/v1/models: the served base models plus the calling key's fine-tuned models; delete for fine-tuned ones."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tunesmith.registry import models
from tunesmith.serve.auth import api_key
from tunesmith.serve.routes.lineage import lineage_field
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.shapes import fine_tuned_model_object, list_object, model_object

router = APIRouter(prefix="/v1/models")


def served_model_ref(request: Request, key: str, model_id: str) -> str:
    """What `load_model` takes for an id this key may use: a base reference or a fine-tune's run directory."""
    bases = request.app.state.settings.base_models()
    if model_id in bases:
        return bases[model_id]
    model = models.get_model(request.app.state.db, key, model_id)
    if model is None:
        raise APIError(404, f"The model {model_id} does not exist or you do not have access to it.",
                       param="model", code="model_not_found")
    return model.run_dir


@router.get("")
def list_models(request: Request, key: str = Depends(api_key)):
    bases = [model_object(model_id) for model_id in request.app.state.settings.base_models()]
    tuned = [fine_tuned_model_object(m, lineage_field(request, key, m)) for m in models.list_models(request.app.state.db, key)]
    return list_object(bases + tuned)


@router.get("/{model_id:path}")
def retrieve_model(request: Request, model_id: str, key: str = Depends(api_key)):
    if model_id in request.app.state.settings.base_models():
        return model_object(model_id)
    model = models.get_model(request.app.state.db, key, model_id)
    if model is None:
        raise not_found("model", model_id, param="model")
    return fine_tuned_model_object(model, lineage_field(request, key, model))


@router.delete("/{model_id:path}")
def delete_model(request: Request, model_id: str, key: str = Depends(api_key)):
    if model_id in request.app.state.settings.base_models():
        raise APIError(403, f"{model_id} is a base model of this server; only fine-tuned models can be deleted.",
                       param="model", code="model_not_deletable")
    if not models.delete_model(request.app.state.db, key, model_id):
        raise not_found("model", model_id, param="model")
    request.app.state.pool.drop(model_id)
    return {"id": model_id, "object": "model", "deleted": True}
