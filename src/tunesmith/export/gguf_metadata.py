"""`general.*` metadata of an exported file: what the model is, what it came from, what it was trained on.

Run as: library code; `tunesmith export` fills it from the run's run.json (train/run_record.py).

A GGUF file travels without its run directory, so it carries its own lineage: the base model's name and
weights digest, each data file's role, path and SHA-256 (the same digests `tunesmith lineage --data`
searches by), and the SHA-256 of the run.json it was exported from. The data keys follow gguf's
`general.base_model.{id}.*` pattern as `general.dataset.{id}.*`; digests gguf has no key for live under
`tunesmith.*`. llama.cpp ignores keys it does not know.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf

from tunesmith.data.hashing import file_sha256
from tunesmith.models.resolve import EMBEDDED_MODELS, ModelNotFoundError, embedded_gguf_path
from tunesmith.train.model_card import base_license
from tunesmith.train.run_record import RUN_RECORD, read_run_record


@dataclass(frozen=True)
class DataFile:
    role: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ExportMetadata:
    name: str
    license: str
    base_model: str | None = None
    base_model_sha256: str | None = None
    method: str | None = None
    data: list[DataFile] = field(default_factory=list)
    run_json_sha256: str | None = None


def licence_of(model: str | None) -> str:
    """A model's licence: its card's `license:`, an embedded model's GGUF `general.license`, else `other`."""
    if model in EMBEDDED_MODELS:
        try:
            fields = gguf.GGUFReader(embedded_gguf_path(EMBEDDED_MODELS[model])).fields
        except ModelNotFoundError:
            return "other"
        return str(fields["general.license"].contents()) if "general.license" in fields else "other"
    return base_license(model)


def run_metadata(run_dir: Path, name: str | None = None) -> ExportMetadata:
    """From a finished run: the licence is its base model's (a finetune inherits it)."""
    record = read_run_record(run_dir)
    base = record.get("base_model")
    return ExportMetadata(
        name=name or run_dir.resolve().name, license=licence_of(base), base_model=base,
        base_model_sha256=record.get("base_model_sha256"), method=record.get("method"),
        data=[DataFile(d["role"], d["path"], d["sha256"]) for d in record.get("data", []) if d.get("sha256")],
        run_json_sha256=file_sha256(run_dir / RUN_RECORD),
    )


def model_metadata(ref: str, name: str | None = None) -> ExportMetadata:
    """From a model that is not a run (an embedded base, a local directory)."""
    return ExportMetadata(name=name or Path(ref).name, license=licence_of(ref))


def write_general(writer: gguf.GGUFWriter, meta: ExportMetadata, file_type: str = "model") -> None:
    writer.add_type(file_type)
    writer.add_name(meta.name)
    writer.add_license(meta.license)
    if meta.base_model is not None:
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, meta.base_model)
    if meta.data:
        writer.add_uint32("general.dataset.count", len(meta.data))
        for i, item in enumerate(meta.data):
            writer.add_string(f"general.dataset.{i}.name", f"{item.role}: {item.path}")
            writer.add_string(f"general.dataset.{i}.sha256", item.sha256)
    for key, value in (("tunesmith.base_model_sha256", meta.base_model_sha256), ("tunesmith.method", meta.method),
                       ("tunesmith.run_json_sha256", meta.run_json_sha256)):
        if value is not None:
            writer.add_string(key, value)
