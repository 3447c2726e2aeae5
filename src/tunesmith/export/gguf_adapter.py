"""A run's LoRA adapter alone → a GGUF adapter (`general.type = adapter`) for llama.cpp's `--lora`.

Run as: library code; `tunesmith export RUN --format lora --out adapter.gguf` calls `write_adapter_gguf`.

One exported base file then serves every LoRA finetune of it: `llama-cli -m base.gguf --lora adapter.gguf`.
Tensors are named after the base tensor they adapt plus `.lora_a` (A, (r, in)) or `.lora_b` (B, (out, r)),
as llama.cpp's convert_lora_to_gguf.py writes them. B of q_proj/k_proj gets the base's Q/K row
permutation (A acts on the input side, which is not reordered). llama.cpp scales an adapter by
alpha / rank; peft's scale (alpha / r, or alpha / √r with rsLoRA) is folded into B and alpha written as
the rank, so every reader computes the same update.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

from tunesmith.export.errors import ExportError
from tunesmith.export.gguf_metadata import ExportMetadata, write_general
from tunesmith.export.gguf_model import add_tensors, write_file
from tunesmith.export.llama_layout import LlamaShape, gguf_tensor_name, llama_shape, permute_for_llama_cpp
from tunesmith.export.tensor_types import ExportType
from tunesmith.train.parent import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_scale

PEFT_PREFIX = "base_model.model."


def check_adapter_config(config: dict, source: Path) -> None:
    """Refuse adapters whose update llama.cpp's LoRA cannot express."""
    if config.get("peft_type") != "LORA":
        raise ExportError(f"{source}: peft_type: {config.get('peft_type')!r} — only LoRA adapters export to GGUF; "
                          "export the merged model (--format gguf) instead")
    for field in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "trainable_token_indices"):
        if config.get(field):
            raise ExportError(f"{source}: {field}: {config[field]!r} — llama.cpp adapters hold plain LoRA A/B pairs "
                              "with one scale; export the merged model (--format gguf) instead")


def llama_cpp_adapter_tensors(weights: dict[str, np.ndarray], shape: LlamaShape, scale: float,
                              source: Path) -> dict[str, np.ndarray]:
    tensors = {}
    for name, array in sorted(weights.items()):
        hf_name, part = name.removeprefix(PEFT_PREFIX), None
        for peft_part, gguf_part in ((".lora_A.weight", "lora_a"), (".lora_B.weight", "lora_b")):
            if hf_name.endswith(peft_part):
                hf_name, part = hf_name.removesuffix(peft_part) + ".weight", gguf_part
        if part is None:
            raise ExportError(f"{source}: tensor {name} is not a LoRA A or B matrix — export the merged model instead")
        array = array.astype(np.float32)
        if part == "lora_b":
            heads = shape.qk_heads(hf_name)
            array = array * scale
            array = permute_for_llama_cpp(array, heads) if heads else array
        tensors[f"{gguf_tensor_name(hf_name, shape)}.{part}"] = array
    return tensors


def write_adapter_gguf(adapter_dir: Path, model_config: Path, out: Path, export: ExportType,
                       meta: ExportMetadata) -> Path:
    """Write `out` from a peft adapter directory; `model_config` is the config.json of the model it adapts."""
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise ExportError(f"{adapter_dir}: no {ADAPTER_CONFIG} — this run trained all weights (or is not a run); "
                          "export the merged model with --format gguf")
    config = json.loads(config_path.read_text())
    check_adapter_config(config, config_path)
    shape = llama_shape(json.loads(model_config.read_text()), str(model_config))
    tensors = llama_cpp_adapter_tensors(load_file(str(adapter_dir / ADAPTER_WEIGHTS)), shape, adapter_scale(config),
                                        adapter_dir / ADAPTER_WEIGHTS)

    def filled(path: Path) -> gguf.GGUFWriter:
        writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        write_general(writer, meta, file_type=gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["r"]))
        add_tensors(writer, tensors, export)
        return writer

    return write_file(filled, out)
