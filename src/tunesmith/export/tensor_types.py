"""The tensor types an export can be written in, and which type each tensor actually gets.

Run as: library code; `tunesmith export --type q8_0` picks one.

Follows llama.cpp's own converter and quantizer: norms and other 1-D tensors stay f32 (they are tiny and
sensitive); a matrix whose rows are not a whole number of 32-value blocks falls back to f16; under q4_0
the token embedding — which a tied model also uses as its output head — is kept at q8_0, as
llama-quantize keeps the output head at a higher-precision type (its Q6_K has no gguf-py encoder).
"""
from __future__ import annotations

from dataclasses import dataclass

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class ExportType:
    name: str
    matrix: gguf.GGMLQuantizationType  # what 2-D weights are stored as
    file_type: gguf.LlamaFileType  # general.file_type: the type most of the file is in


EXPORT_TYPES = {
    "f32": ExportType("f32", Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": ExportType("f16", Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": ExportType("bf16", Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": ExportType("q8_0", Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": ExportType("q4_0", Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
HIGH_PRECISION_UNDER_Q4 = ("token_embd.weight", "output.weight")


def storage_type(gguf_name: str, array: np.ndarray, export: ExportType) -> gguf.GGMLQuantizationType:
    """The type this tensor is written in under `export` (see the module docstring for the rules)."""
    if array.ndim < 2 or export.matrix == Q.F32:
        return Q.F32
    wanted = export.matrix
    if wanted == Q.Q4_0 and gguf_name in HIGH_PRECISION_UNDER_Q4:
        wanted = Q.Q8_0
    block, _ = gguf.GGML_QUANT_SIZES[wanted]
    if array.shape[-1] % block:
        return Q.F16
    return wanted


def encode(array: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """float32 values → the array gguf-py writes for `qtype` (raw bytes for block and bf16 types)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if qtype == Q.F32:
        return array
    if qtype == Q.F16:
        return array.astype(np.float16)
    return gguf.quants.quantize(array, qtype)
