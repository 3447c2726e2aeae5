"""Classification losses summed over examples, and the class weights that counter imbalance.

- multi-label (a moderation model: a text may be hate AND harassment, or nothing): one sigmoid per label,
  binary cross-entropy per label averaged over the labels, so each example weighs the same whatever the
  number of labels; `pos_weight[l]` multiplies the loss of label l's positive rows.
- single-label: softmax cross-entropy over the labels; `weight[c]` multiplies the loss of class c's rows.

Both return a SUM over examples: the shared loop (loop.py) divides by the step's example count, so
accumulation and data parallelism never change an update.

Class weights ("balanced"): with 13 moderation labels of which most rows carry none, an unweighted BCE
learns "never" for a label seen on 2% of rows. Multi-label: pos_weight = negatives / positives per label;
single-label: weight = rows / (classes × rows of the class) (sklearn's "balanced"). Both are capped at
`max_weight`: a label with 2 positives would otherwise weigh ~700× and its few rows swamp the step.
A label with no positive row gets weight 1 (there is nothing to up-weight).
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

ClassWeights = Literal["balanced", "none"]


def classification_loss_sum(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool,
                            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Loss summed over the batch's examples. logits, targets: (B, L); weights: (L,) or None."""
    logits = logits.float()  # the loss in float32 under bf16 autocast
    if multi_label:
        per_label = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights, reduction="none")  # (B, L)
        return per_label.mean(dim=-1).sum()
    per_example = F.cross_entropy(logits, targets.argmax(dim=-1), weight=weights, reduction="none")  # (B,)
    return per_example.sum()


def correct_count(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Examples predicted exactly right: every label on the right side of 0.5 (multi), or the argmax (single)."""
    if multi_label:
        return ((logits > 0) == (targets > 0.5)).all(dim=-1).sum().float()
    return (logits.argmax(dim=-1) == targets.argmax(dim=-1)).sum().float()


def class_weights(targets: Sequence[Sequence[float]], multi_label: bool, mode: ClassWeights,
                  max_weight: float) -> torch.Tensor | None:
    """(L,) weights from the training targets (module docstring), or None for mode "none"."""
    if mode == "none":
        return None
    matrix = torch.tensor(targets, dtype=torch.float64)  # (N, L)
    rows, labels = matrix.shape
    positives = matrix.sum(dim=0)
    if multi_label:
        raw = (rows - positives) / positives
    else:
        raw = rows / (labels * positives)
    raw = torch.where(positives > 0, raw, torch.ones_like(raw))
    return raw.clamp(max=max_weight).float()
