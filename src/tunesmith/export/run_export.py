"""`tunesmith export`: a run, a model directory or an embedded base → GGUF, GGUF + Ollama Modelfile, or a
GGUF LoRA adapter.

Run as: tunesmith export runs/elements-demo --format gguf --out elements.gguf --type f16
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from tunesmith.export.errors import ExportError
from tunesmith.export.gguf_adapter import write_adapter_gguf
from tunesmith.export.gguf_metadata import ExportMetadata, model_metadata, run_metadata
from tunesmith.export.gguf_model import write_model_gguf
from tunesmith.export.ollama import modelfile
from tunesmith.export.tensor_types import EXPORT_TYPES, ExportType
from tunesmith.models.resolve import resolve_model_dir
from tunesmith.train.run_record import RUN_RECORD

FORMATS = ("gguf", "ollama", "lora")


@dataclass(frozen=True)
class ExportSource:
    model_dir: Path  # merged weights + tokenizer
    adapter_dir: Path | None  # a LoRA run's peft adapter
    meta: ExportMetadata


@dataclass(frozen=True)
class ExportResult:
    format: str
    type: str
    files: list[Path]
    name: str


def export_source(ref: str, name: str | None = None) -> ExportSource:
    """A run directory (its model/, adapter/ and run.json) or any model reference `resolve_model_dir` takes."""
    path = Path(ref).expanduser()
    if (path / RUN_RECORD).is_file():
        if not (path / "model" / "config.json").is_file():
            raise ExportError(f"{path}: run has no model/ — it has not finished; export it once training ends "
                              f"(or `tunesmith train --out {path} --resume`)")
        adapter = path / "adapter"
        return ExportSource(path / "model", adapter if adapter.is_dir() else None, run_metadata(path, name))
    return ExportSource(resolve_model_dir(ref), None, model_metadata(ref, name))


def export_type(type_name: str) -> ExportType:
    if type_name not in EXPORT_TYPES:
        raise ExportError(f"--type: {type_name!r} is not a GGUF export type — use one of {', '.join(EXPORT_TYPES)}")
    return EXPORT_TYPES[type_name]


def export(ref: str, fmt: str, out: Path, type_name: str = "f16", name: str | None = None) -> ExportResult:
    """Write the export; `out` is the .gguf file (gguf, lora) or the directory for GGUF + Modelfile (ollama)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not an export format — use one of {', '.join(FORMATS)}")
    chosen, source = export_type(type_name), export_source(ref, name)
    if fmt == "lora":
        if source.adapter_dir is None:
            raise ExportError(f"{ref}: no LoRA adapter (only LoRA runs have RUN/adapter/) — export the merged "
                              "model with --format gguf")
        files = [write_adapter_gguf(source.adapter_dir, source.model_dir / "config.json", out, chosen, source.meta)]
    elif fmt == "gguf":
        files = [write_model_gguf(source.model_dir, out, chosen, source.meta)]
    else:
        gguf_name = f"{source.meta.name}-{type_name}.gguf"
        recipe = modelfile(gguf_name, AutoTokenizer.from_pretrained(source.model_dir))  # refuses before writing
        files = [write_model_gguf(source.model_dir, out / gguf_name, chosen, source.meta), out / "Modelfile"]
        files[1].write_text(recipe)
    return ExportResult(fmt, type_name, files, source.meta.name)
