"""One forward pass that returns the summed loss over trained tokens of a batch.

Attention on short rows runs PyTorch's math kernel on the CPU, not its flash kernel. The flash kernel's
backward is slow on short rows: on the elements rows (16 rows of ~72 tokens, 9 heads, bf16, 2 threads) the
math kernel's forward + backward took 0.63× the flash kernel's time (0.73× at 128 tokens), and attention was
~19% of a LoRA step. From 256 tokens on, flash is faster (math 1.3× at 256, 1.8× at 1024) and the math
kernel's (R, heads, T, T) scores grow with the square of the width, so wider rows keep flash. Forward passes
without gradients (validation, reference models) keep flash too: its forward alone is the faster one (math
1.3-2.6× at 60-128 tokens). GPUs keep their own kernels.

A model switched to grouped attention (train/grouped_attention.py: each packed example's block of the mask as a
small dense product, not the row's whole square) takes it in training forwards on the CPU whose examples see at
most GROUPED_MAX_KEYS keys each, whatever the row's width.
"""
from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import PreTrainedModel

from tunesmith.models.attention_mask import for_attention
from tunesmith.train.grouped_attention import GROUPED_MAX_KEYS, uses_grouped_attention
from tunesmith.train.loss import LOSS_CHUNK, trained_token_loss_and_hits, trained_token_loss_sum
from tunesmith.train.packing import ModelBatch


def causal_lm_of(model) -> PreTrainedModel:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# Row widths up to this use the math attention kernel on the CPU (measured above; 256 is past the crossover).
MATH_ATTENTION_MAX_WIDTH = 128


def attention_kernel(causal_lm: PreTrainedModel, batch: ModelBatch):
    """The sdpa kernel for this batch's forward (its backward follows the forward's choice). Not under activation
    checkpointing: its backward recomputes the forward outside this context, where the kernel would differ."""
    if (torch.is_grad_enabled() and batch.input_ids.device.type == "cpu"
            and batch.input_ids.shape[1] <= MATH_ATTENTION_MAX_WIDTH
            and not checkpointed(causal_lm)):
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def checkpointed(causal_lm: PreTrainedModel) -> bool:
    """Activation checkpointing on: transformers' flag on the decoder's layers (its `is_activation_checkpointing`
    walks every module of the model, 11 ms a step on the 135M model), or its walk where there is no layer list."""
    decoder = causal_lm.get_decoder()
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, torch.nn.ModuleList):
        return bool(getattr(decoder, "gradient_checkpointing", False)) \
            or any(getattr(layer, "gradient_checkpointing", False) for layer in layers)
    return getattr(causal_lm, "is_activation_checkpointing", False)


def decoder_hidden(causal_lm: PreTrainedModel, batch: ModelBatch) -> torch.Tensor:
    """The decoder's last hidden states (R, T, H) for a packed batch, its mask as the model's attention reads it."""
    return causal_lm.get_decoder()(
        input_ids=batch.input_ids,
        attention_mask=for_attention(causal_lm, batch.attention_mask),
        position_ids=batch.position_ids,
        use_cache=False,
        **groups_keyword(causal_lm, batch),
    ).last_hidden_state


def groups_keyword(causal_lm: PreTrainedModel, batch: ModelBatch) -> dict:
    """The batch's attention groups as the decoder's keyword, where the model attends in groups (module doc)."""
    groups = batch.attention_groups
    if (groups is not None and groups.widest <= GROUPED_MAX_KEYS and torch.is_grad_enabled()
            and batch.input_ids.device.type == "cpu" and uses_grouped_attention(causal_lm)):
        return {"attention_groups": groups}
    return {}


def final_hidden(causal_lm: PreTrainedModel, batch: ModelBatch) -> torch.Tensor:
    """decoder_hidden under the attention kernel this batch trains with (attention_kernel)."""
    with attention_kernel(causal_lm, batch):
        return decoder_hidden(causal_lm, batch)


def batch_loss_sum(model, batch: ModelBatch, loss_chunk: int = LOSS_CHUNK) -> torch.Tensor:
    """Sum of token cross-entropies over the batch's trained positions (not yet normalised)."""
    causal_lm = causal_lm_of(model)
    return trained_token_loss_sum(final_hidden(causal_lm, batch), batch.targets, causal_lm.get_output_embeddings(),
                                  chunk=loss_chunk)


def batch_loss_and_hits(model, batch: ModelBatch, loss_chunk: int = LOSS_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch_loss_sum, trained positions predicted right by argmax): what supervised training logs."""
    causal_lm = causal_lm_of(model)
    return trained_token_loss_and_hits(final_hidden(causal_lm, batch), batch.targets,
                                       causal_lm.get_output_embeddings(), chunk=loss_chunk)
