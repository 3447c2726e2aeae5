"""A merged Hugging Face llama directory → one GGUF file llama.cpp loads (weights, tokenizer, metadata).

Run as: library code; `tunesmith export RUN --format gguf --out model.gguf --type f16` calls `write_model_gguf`.

The file is written by gguf-py's GGUFWriter (the llama.cpp project's own writer) to a temporary name beside
the target and renamed into place, so a failed export never leaves a truncated file under the real name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
from safetensors import safe_open
from transformers import AutoTokenizer

from tunesmith.export.errors import ExportError
from tunesmith.export.gguf_metadata import ExportMetadata, write_general
from tunesmith.export.gguf_vocab import write_tokenizer
from tunesmith.export.llama_layout import (
    LlamaShape,
    gguf_tensor_name,
    llama_shape,
    permute_for_llama_cpp,
    write_hyperparameters,
)
from tunesmith.export.tensor_types import ExportType, encode, storage_type


def read_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the directory's safetensors files (sharded or not) as float32."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no *.safetensors file — export reads merged safetensors weights "
                          "(a finished run's model/ directory, or save_pretrained output)")
    weights = {}
    for path in files:
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                weights[name] = handle.get_tensor(name).float().numpy()
    return weights


def llama_cpp_tensors(weights: dict[str, np.ndarray], shape: LlamaShape) -> dict[str, np.ndarray]:
    """HF names and row orders → llama.cpp's. A tied head is not written: llama.cpp reuses token_embd."""
    tensors = {}
    for hf_name, array in weights.items():
        if shape.tied_embeddings and hf_name == "lm_head.weight":
            continue
        heads = shape.qk_heads(hf_name)
        tensors[gguf_tensor_name(hf_name, shape)] = permute_for_llama_cpp(array, heads) if heads else array
    return tensors


def write_file(writer_for, out: Path) -> Path:
    """Run `writer_for(path)` (which returns a filled GGUFWriter) on a temporary path, then rename it to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".tmp-{out.name}")
    writer = writer_for(staging)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(staging, out)
    return out


def add_tensors(writer: gguf.GGUFWriter, tensors: dict[str, np.ndarray], export: ExportType) -> None:
    for name, array in tensors.items():
        qtype = storage_type(name, array, export)
        writer.add_tensor(name, encode(array, qtype), raw_dtype=None if qtype in (gguf.GGMLQuantizationType.F32,
                                                                                gguf.GGMLQuantizationType.F16) else qtype)


def write_model_gguf(model_dir: Path, out: Path, export: ExportType, meta: ExportMetadata) -> Path:
    """Write `out`: general.* metadata, llama hyperparameters, tokenizer and chat template, tensors in `export`."""
    config_path = model_dir / "config.json"
    shape = llama_shape(json.loads(config_path.read_text()), str(config_path))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tensors = llama_cpp_tensors(read_weights(model_dir), shape)

    def filled(path: Path) -> gguf.GGUFWriter:
        writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        write_general(writer, meta)
        write_hyperparameters(writer, shape)
        writer.add_file_type(export.file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        write_tokenizer(writer, tokenizer, model_dir, shape.vocab)
        add_tensors(writer, tensors, export)
        return writer

    return write_file(filled, out)
