"""Causal-LM loss on trained positions only, summed; callers divide by the step's trained-token count.

The output head runs only on positions that have a target, in chunks, so logits for the whole
batch over the full vocabulary are never materialised: (N_trained, V) in pieces of `chunk` rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunesmith.data.render import IGNORE_INDEX

# Trained positions whose logits are computed at once: one (LOSS_CHUNK, V) block is the loss's peak memory.
# The cost estimator (tunesmith.estimate.cost_model) models this same chunk; change it here only.
LOSS_CHUNK = 1024


def trained_token_loss_sum(
    hidden: torch.Tensor,  # (R, T, H) final hidden states
    targets: torch.Tensor,  # (R, T) next-token ids, IGNORE_INDEX where not trained
    output_head: torch.nn.Module,  # H -> V
    chunk: int = LOSS_CHUNK,
) -> torch.Tensor:
    keep = targets != IGNORE_INDEX
    selected = hidden[keep]  # (N, H)
    labels = targets[keep]  # (N,)
    if selected.shape[0] <= chunk:
        return _head_cross_entropy(output_head, selected, labels)
    # Recompute each chunk's logits in backward instead of keeping them: peak is one (chunk, V) block.
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, selected.shape[0], chunk):
        piece = slice(start, start + chunk)
        total = total + checkpoint(_head_cross_entropy, output_head, selected[piece], labels[piece], use_reentrant=False)
    return total


def _head_cross_entropy(output_head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = output_head(hidden).float()  # (n, V)
    return F.cross_entropy(logits, labels, reduction="sum")
