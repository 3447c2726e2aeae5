"""Causal-LM loss on trained positions only, summed; callers divide by the step's trained-token count.

The output head runs only on positions that have a target, in chunks, so logits for the whole
batch over the full vocabulary are never materialised: (N_trained, V) in pieces of `chunk` rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunesmith.data.render import IGNORE_INDEX
from tunesmith.models.argmax import argmax

# Trained positions whose logits are computed at once: one (LOSS_CHUNK, V) block is the loss's peak memory.
# The cost estimator (tunesmith.estimate.cost_model) models this same chunk; change it here only.
LOSS_CHUNK = 1024


def trained_token_loss_sum(
    hidden: torch.Tensor,  # (R, T, H) final hidden states
    targets: torch.Tensor,  # (R, T) next-token ids, IGNORE_INDEX where not trained
    output_head: torch.nn.Module,  # H -> V
    chunk: int = LOSS_CHUNK,
) -> torch.Tensor:
    return _chunked_sums(hidden, targets, output_head, chunk, _head_cross_entropy)[0]


def trained_token_loss_and_hits(
    hidden: torch.Tensor,  # (R, T, H)
    targets: torch.Tensor,  # (R, T)
    output_head: torch.nn.Module,
    chunk: int = LOSS_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, trained positions whose most likely next token is the target): hits / trained tokens is the
    token accuracy that supervised runs log. The argmax reuses each chunk's logits (recomputed with them in backward)."""
    return _chunked_sums(hidden, targets, output_head, chunk, _head_cross_entropy_and_hits)


def _chunked_sums(hidden: torch.Tensor, targets: torch.Tensor, output_head: torch.nn.Module, chunk: int,
                  on_chunk) -> tuple[torch.Tensor, ...]:
    keep = targets != IGNORE_INDEX
    selected = hidden[keep]  # (N, H)
    labels = targets[keep]  # (N,)
    if selected.shape[0] <= chunk:
        return on_chunk(output_head, selected, labels)
    # Recompute each chunk's logits in backward instead of keeping them: peak is one (chunk, V) block.
    totals = None
    for start in range(0, selected.shape[0], chunk):
        piece = slice(start, start + chunk)
        sums = checkpoint(on_chunk, output_head, selected[piece], labels[piece], use_reentrant=False)
        totals = sums if totals is None else tuple(total + part for total, part in zip(totals, sums))
    return totals


def _head_cross_entropy(output_head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor]:
    logits = output_head(hidden).float()  # (n, V)
    return (F.cross_entropy(logits, labels, reduction="sum"),)


def _head_cross_entropy_and_hits(output_head: torch.nn.Module, hidden: torch.Tensor,
                                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = output_head(hidden).float()  # (n, V)
    return F.cross_entropy(logits, labels, reduction="sum"), (argmax(logits.detach()) == labels).sum()


def trained_token_losses(hidden: torch.Tensor, targets: torch.Tensor, output_head: torch.nn.Module,
                         chunk: int = LOSS_CHUNK) -> torch.Tensor:
    """(R, T) float32 cross-entropy of each trained position, 0 elsewhere: the same per-token terms that
    trained_token_loss_sum adds up, kept apart so that examples packed into one row can be summed one by one
    (evaluation; the head runs on `chunk` trained positions at a time)."""
    keep = targets != IGNORE_INDEX
    selected, labels = hidden[keep], targets[keep]  # (N, H), (N,)
    losses = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    if labels.numel():
        losses[keep] = torch.cat([F.cross_entropy(output_head(selected[start : start + chunk]).float(),
                                                  labels[start : start + chunk], reduction="none")
                                  for start in range(0, labels.shape[0], chunk)])
    return losses
