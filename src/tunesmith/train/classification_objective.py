"""The classification objective (objective.py's protocol): one unit per example, loss from the pooled logits.

Batches are right-padded with the run's pad id, which the model's config also names, so the
...ForSequenceClassification model pools each row's last real token (models/classifier.py). Packing does
not apply: one text is one row, and its one pooled token must not see another example.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tunesmith.data.classification_examples import ClassifiedExample
from tunesmith.models.classifier import right_pad
from tunesmith.train.classification_loss import classification_loss_sum, correct_count
from tunesmith.train.objective import BatchLayout


@dataclass
class ClassificationBatch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, L) float 0/1
    num_real_tokens: int

    def to(self, device: torch.device | str) -> "ClassificationBatch":
        return ClassificationBatch(self.input_ids.to(device), self.attention_mask.to(device),
                                   self.targets.to(device), self.num_real_tokens)


@dataclass(frozen=True)
class ClassificationObjective:
    """Multi-label BCE or single-label CE (classification_loss.py), with optional (L,) class weights."""

    multi_label: bool
    weights: torch.Tensor | None = None
    metric_names: tuple[str, ...] = ("accuracy",)  # exact-match accuracy, a mean over the step's examples

    def denominator(self, example: ClassifiedExample) -> int:
        return 1

    def trained_tokens(self, example: ClassifiedExample) -> int:
        return len(example.input_ids)  # every token feeds the pooled one

    def collate(self, examples: list[ClassifiedExample], settings: BatchLayout) -> ClassificationBatch:
        input_ids, attention_mask = right_pad([e.input_ids[: settings.max_length] for e in examples], settings.pad_id)
        targets = torch.tensor([e.target for e in examples], dtype=torch.float32)
        return ClassificationBatch(input_ids, attention_mask, targets, int(attention_mask.sum()))

    def loss_sum(self, model, batch: ClassificationBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, L)
        weights = self.weights.to(logits.device) if self.weights is not None else None
        loss = classification_loss_sum(logits, batch.targets, self.multi_label, weights)
        return loss, {"accuracy": correct_count(logits.detach(), batch.targets, self.multi_label)}
