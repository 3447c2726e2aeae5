"""Load a causal LM and its tokenizer from a model reference."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.models.classifier import bf16_supported
from tunesmith.models.resolve import NO_HUB_KERNELS, resolve_model_dir


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template, or one whose turns tunesmith cannot tell apart; the message says what to use."""


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(ref))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ChatTemplateError(
            f"{ref} has no chat template; train it on raw text, or use an instruct model "
            "whose tokenizer_config.json carries one."
        )
    return tokenizer


def load_model(ref: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa") -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(ref), dtype=dtype, attn_implementation=attn_implementation, **NO_HUB_KERNELS
    )


def inference_dtype(bf16: bool | None) -> torch.dtype:
    """Weights for serving and evaluation: bf16 where asked, or (None) where the hardware has bf16 matmuls; else float32.

    Measured (SmolLM2-135M, 16 rows decoding together, one thread of a loaded 2-core AMD EPYC with
    AVX512-BF16): a decoding step takes 93 ms with bf16 weights against 149 ms in float32, a prefill of
    16 prompts 0.94 s against 1.70 s; 8 of 16 greedy answers of 64 tokens came out identical to float32's."""
    if bf16 is None:
        bf16 = bf16_supported(torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda"))
    return torch.bfloat16 if bf16 else torch.float32
