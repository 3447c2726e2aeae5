"""Load a causal LM and its tokenizer from a model reference."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.models.resolve import resolve_model_dir


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
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(ref), dtype=dtype, attn_implementation=attn_implementation
    )
    return model
