"""One forward pass that returns the summed loss over trained tokens of a batch."""
from __future__ import annotations

import torch
from transformers import PreTrainedModel

from tunesmith.train.loss import LOSS_CHUNK, trained_token_loss_and_hits, trained_token_loss_sum
from tunesmith.train.packing import ModelBatch


def causal_lm_of(model) -> PreTrainedModel:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def final_hidden(causal_lm: PreTrainedModel, batch: ModelBatch) -> torch.Tensor:
    return causal_lm.get_decoder()(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state  # (R, T, H)


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
