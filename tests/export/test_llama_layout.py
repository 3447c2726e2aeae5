"""The Q/K row permutation llama.cpp expects: an exact round trip, and the reason it exists — llama.cpp's
adjacent-pair rotary embedding on the permuted rows equals transformers' half-split one on the original."""
import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from tunesmith.export.errors import ExportError
from tunesmith.export.llama_layout import llama_shape, permute_for_llama_cpp, permute_from_llama_cpp


def llama_cpp_rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """ggml's normal-mode rope: rotate pairs (2i, 2i+1) by position·theta^(-2i/d). x: (T, heads, d)."""
    d = x.shape[-1]
    angles = positions[:, None] * theta ** (-np.arange(0, d, 2) / d)  # (T, d/2)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
    return out


def hf_rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """transformers' llama rope (rotate_half: dimension i pairs with i + d/2). x: (T, heads, d)."""
    d = x.shape[-1]
    angles = positions[:, None] * theta ** (-np.arange(0, d, 2) / d)
    emb = np.concatenate([angles, angles], axis=-1)  # (T, d)
    cos, sin = torch.tensor(np.cos(emb))[None], torch.tensor(np.sin(emb))[None]
    q = torch.tensor(x).transpose(0, 1)[None]  # (1, heads, T, d)
    rotated, _ = apply_rotary_pos_emb(q, q, cos, sin)
    return rotated[0].transpose(0, 1).numpy()


@pytest.mark.parametrize("heads", [1, 3, 4])
def test_permutation_round_trips_and_moves_rows_within_heads(heads):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(heads * 8, 24))
    permuted = permute_for_llama_cpp(weights, heads)
    assert np.array_equal(permute_from_llama_cpp(permuted, heads), weights)
    assert not np.array_equal(permuted, weights)
    # head h's first-half row j lands at 2j, its second-half row j at 2j+1, all inside head h
    assert np.array_equal(permuted[8 * (heads - 1) + 2], weights[8 * (heads - 1) + 1])
    assert np.array_equal(permuted[8 * (heads - 1) + 3], weights[8 * (heads - 1) + 4 + 1])
    lora_b = rng.normal(size=(heads * 8, 4))  # (out, r): the same rows move
    assert np.array_equal(permute_from_llama_cpp(permute_for_llama_cpp(lora_b, heads), heads), lora_b)


def test_permuted_projection_under_llama_cpp_rope_gives_transformers_attention_scores():
    rng = np.random.default_rng(1)
    heads, kv_heads, d, hidden, steps, theta = 4, 2, 16, 32, 6, 10000.0
    wq, wk = rng.normal(size=(heads * d, hidden)), rng.normal(size=(kv_heads * d, hidden))
    x, positions = rng.normal(size=(steps, hidden)), np.arange(steps, dtype=np.float64)

    def scores(q, k):  # (heads, T, T), each query head against its key/value group's key head
        k = np.repeat(k, heads // kv_heads, axis=1)
        return np.einsum("thd,shd->hts", q, k)

    hf = scores(hf_rope((x @ wq.T).reshape(steps, heads, d), positions, theta),
                hf_rope((x @ wk.T).reshape(steps, kv_heads, d), positions, theta))
    cpp_q = x @ permute_for_llama_cpp(wq, heads).T
    cpp_k = x @ permute_for_llama_cpp(wk, kv_heads).T
    cpp = scores(llama_cpp_rope(cpp_q.reshape(steps, heads, d), positions, theta),
                 llama_cpp_rope(cpp_k.reshape(steps, kv_heads, d), positions, theta))
    assert np.allclose(cpp, hf, atol=1e-9)
    unpermuted = scores(llama_cpp_rope((x @ wq.T).reshape(steps, heads, d), positions, theta),
                        llama_cpp_rope((x @ wk.T).reshape(steps, kv_heads, d), positions, theta))
    assert not np.allclose(unpermuted, hf, atol=1e-3)  # without the permutation the scores are wrong


def test_other_architectures_and_scaled_rope_are_refused():
    base = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "vocab_size": 400}
    assert llama_shape(base, "config.json").head_dim == 16
    with pytest.raises(ExportError, match=r"config.json: model_type: 'gpt2' is not exportable .*convert_hf_to_gguf"):
        llama_shape(base | {"model_type": "gpt2"}, "config.json")
    with pytest.raises(ExportError, match=r"rope_type: 'llama3' is not exported"):
        llama_shape(base | {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "config.json")
