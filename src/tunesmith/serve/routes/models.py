"""/v1/models: served base models, the calling key's fine-tuned models and its versioned models; delete for
fine-tuned ones; promote and rollback (extension endpoints) for versioned ones.

A versioned model (`tunesmith models register`) is listed as `NAME:N` for every version and `NAME:latest`
for the promoted one. A request for `NAME:latest` is served by the promoted version under its own id, so
promote and rollback take effect at the next request, and since every LoRA version is an adapter over the
shared base (serve/model_pool.py), switching loads no base again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from tunesmith.registry import models, versions
from tunesmith.serve.auth import api_key
from tunesmith.serve.routes.lineage import lineage_field
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.shapes import fine_tuned_model_object, list_object, model_object, version_object

router = APIRouter(prefix="/v1/models")


@dataclass
class ServedRef:
    """How to serve a model id: under which id, from what, and as an adapter on which served base."""

    model_id: str  # the concrete id the pool caches it under (NAME:N for NAME:latest)
    ref: str  # what load_model takes: a base reference or a run directory
    base_id: str | None = None  # a served base this LoRA model runs on as an adapter
    adapter: Path | None = None


def served_base_id(request: Request, base_ref: str) -> str | None:
    """The id under which the server serves a run's base model (`base_model` in run.json), if it does."""
    bases = request.app.state.settings.base_models()
    if base_ref in bases:
        return base_ref
    path = Path(base_ref).expanduser()
    return next((model_id for model_id, ref in bases.items() if path.is_dir() and Path(ref) == path.resolve()), None)


def with_adapter(request: Request, served: ServedRef, base_ref: str) -> ServedRef:
    adapter = Path(served.ref) / "adapter"
    base_id = served_base_id(request, base_ref)
    if base_id is not None and (adapter / "adapter_config.json").is_file():
        served.base_id, served.adapter = base_id, adapter
    return served


def served_entry(settings, db, key: str, model_id: str) -> tuple[str, str, str | None] | None:
    """(the id the pool caches it under, what load_model takes, the base its run trained on — None for a base) for a
    base, one of this key's fine-tunes or one of its versions (NAME:N, NAME:latest); None otherwise."""
    bases = settings.base_models()
    if model_id in bases:
        return model_id, bases[model_id], None
    tuned = models.get_model(db, key, model_id)
    if tuned is not None:
        return model_id, tuned.run_dir, tuned.base
    version = versions.resolve(db, key, model_id)
    if version is not None:
        return version.id, version.run_dir, version.base
    return None


def resolve_served(request: Request, key: str, model_id: str) -> ServedRef:
    """A base, one of this key's fine-tunes, or one of its versions; 404 otherwise."""
    entry = served_entry(request.app.state.settings, request.app.state.db, key, model_id)
    if entry is None:
        raise APIError(404, f"The model {model_id} does not exist or you do not have access to it.",
                       param="model", code="model_not_found")
    cached_id, ref, base = entry
    return ServedRef(cached_id, ref) if base is None else with_adapter(request, ServedRef(cached_id, ref), base)


def served_model_ref(request: Request, key: str, model_id: str) -> str:
    """What `load_model` takes for an id this key may use: a base reference or a run directory."""
    return resolve_served(request, key, model_id).ref


def version_objects(request: Request, key: str) -> list[dict]:
    found, db = [], request.app.state.db
    for version in versions.list_versions(db, key):
        current = versions.promoted(db, key, version.name)
        serving = current is not None and current.number == version.number
        found.append(version_object(version, serving))
        if serving:
            found.append(version_object(version, serving, alias=f"{version.name}:latest"))
    return found


@router.get("")
def list_models(request: Request, key: str = Depends(api_key)):
    bases = [model_object(model_id) for model_id in request.app.state.settings.base_models()]
    tuned = [fine_tuned_model_object(m, lineage_field(request, key, m)) for m in models.list_models(request.app.state.db, key)]
    return list_object(bases + tuned + version_objects(request, key))


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int


def version_error(exc: versions.VersionError) -> APIError:
    return APIError(409, str(exc), param="model", code="version_not_promotable")


@router.post("/{name}/promote")
def promote_version(request: Request, name: str, body: Promotion, key: str = Depends(api_key)):
    """Serve NAME:N as NAME:latest (refused, 409, for a version whose gates failed)."""
    if versions.get_version(request.app.state.db, key, name, body.version) is None:
        raise not_found("model", f"{name}:{body.version}", param="model")
    try:
        version = versions.promote(request.app.state.db, key, name, body.version, key)
    except versions.VersionError as exc:
        raise version_error(exc) from None
    return version_object(version, serving=True, alias=f"{name}:latest")


@router.post("/{name}/rollback")
def rollback_version(request: Request, name: str, key: str = Depends(api_key)):
    """Serve again the version promoted before the current one; returns NAME:latest as it now is."""
    if not versions.list_versions(request.app.state.db, key, name):
        raise not_found("model", name, param="model")
    try:
        version = versions.rollback(request.app.state.db, key, name, key)
    except versions.VersionError as exc:
        raise version_error(exc) from None
    return version_object(version, serving=True, alias=f"{name}:latest")


@router.get("/{model_id:path}")
def retrieve_model(request: Request, model_id: str, key: str = Depends(api_key)):
    if model_id in request.app.state.settings.base_models():
        return model_object(model_id)
    model = models.get_model(request.app.state.db, key, model_id)
    if model is not None:
        return fine_tuned_model_object(model, lineage_field(request, key, model))
    version = versions.resolve(request.app.state.db, key, model_id)
    if version is None:
        raise not_found("model", model_id, param="model")
    current = versions.promoted(request.app.state.db, key, version.name)
    serving = current is not None and current.number == version.number
    return version_object(version, serving, alias=model_id if model_id.endswith(":latest") else None)


@router.delete("/{model_id:path}")
def delete_model(request: Request, model_id: str, key: str = Depends(api_key)):
    if model_id in request.app.state.settings.base_models():
        raise APIError(403, f"{model_id} is a base model of this server; only fine-tuned models can be deleted.",
                       param="model", code="model_not_deletable")
    if not models.delete_model(request.app.state.db, key, model_id):
        raise not_found("model", model_id, param="model")
    request.app.state.pool.drop(model_id)
    return {"id": model_id, "object": "model", "deleted": True}
