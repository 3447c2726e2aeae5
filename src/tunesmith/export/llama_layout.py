"""How a Hugging Face llama checkpoint maps onto llama.cpp's llama graph: tensor names, hyperparameters,
and the row order of the Q and K projections.

Run as: library code; `tunesmith export` calls it.

Hugging Face applies rotary embeddings to the two halves of each head (dimension i pairs with i + d/2,
`rotate_half`); llama.cpp's llama graph rotates adjacent pairs (2i, 2i+1). Converting therefore reorders
the output rows of q_proj and k_proj within each head — the permutation of llama.cpp's
convert_hf_to_gguf.py (LlamaModel.permute), with K permuted over its key/value heads. Without it the file
loads and runs but every attention score is wrong. tests/export/test_llama_layout.py proves the
reordering against both rotary conventions.
"""
from __future__ import annotations

from dataclasses import dataclass

import gguf
import numpy as np

from tunesmith.export.errors import ExportError

LLAMA_MODEL_TYPES = ("llama",)


def permute_for_llama_cpp(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a Q or K projection (out, in) — or a LoRA B (out, r) — from HF's half-split rotary order to
    llama.cpp's interleaved one: within each head, row j of the first half goes to 2j, of the second to 2j+1."""
    head_dim = weights.shape[0] // n_head
    return (weights.reshape(n_head, 2, head_dim // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def permute_from_llama_cpp(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute_for_llama_cpp` (what a GGUF reader applies to get HF's order back)."""
    head_dim = weights.shape[0] // n_head
    return (weights.reshape(n_head, head_dim // 2, 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters llama.cpp's llama graph reads from `llama.*` keys."""

    blocks: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rope_theta: float
    rms_eps: float
    vocab: int
    tied_embeddings: bool

    def qk_heads(self, hf_name: str) -> int | None:
        """The head count that orders this tensor's rows, for q_proj and k_proj; None for any other tensor."""
        if ".self_attn.q_proj." in hf_name:
            return self.heads
        if ".self_attn.k_proj." in hf_name:
            return self.kv_heads
        return None


def llama_shape(config: dict, source: str) -> LlamaShape:
    """Read a config.json; refuse what the llama graph would run wrongly (other architectures, scaled rope)."""
    model_type = config.get("model_type")
    if model_type not in LLAMA_MODEL_TYPES:
        raise ExportError(f"{source}: model_type: {model_type!r} is not exportable — GGUF export supports the llama "
                          f"family ({', '.join(LLAMA_MODEL_TYPES)}); convert other architectures with llama.cpp's "
                          "convert_hf_to_gguf.py from the merged model directory")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ExportError(f"{source}: rope_parameters.rope_type: {rope_type!r} is not exported (only unscaled rope) "
                          "— use llama.cpp's convert_hf_to_gguf.py, which writes the scaling tables")
    heads = config["num_attention_heads"]
    return LlamaShape(
        blocks=config["num_hidden_layers"], hidden=config["hidden_size"], intermediate=config["intermediate_size"],
        heads=heads, kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        context=config.get("max_position_embeddings", 2048),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)), vocab=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def write_hyperparameters(writer: gguf.GGUFWriter, shape: LlamaShape) -> None:
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_block_count(shape.blocks)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.heads:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)


def gguf_tensor_name(hf_name: str, shape: LlamaShape) -> str:
    """`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`, by gguf-py's own name map."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.blocks)
    found = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise ExportError(f"tensor {hf_name}: no llama.cpp llama tensor corresponds to it — this checkpoint has "
                          "parts the llama graph lacks; export the merged model with llama.cpp's converter")
    return found
