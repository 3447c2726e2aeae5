"""What a training method optimises, as one object the shared loop calls: its examples, batches and loss.

The loop (loop.py) owns the one piece of math every method shares: a step's loss is the sum of its
per-unit losses over all micro-batches (and ranks) divided by the step's total count of units — not a
mean of micro-batch means — so accumulation, packing and the number of processes never change an update.
What a unit is belongs to the method, and is all an `Objective` says about normalisation:

- supervised finetuning (`TokenObjective`, here): a trained token — each answer token weighs the same;
- DPO (preference_objective.py): a preference pair — each pair's loss weighs the same, whatever its length;
- classification: an example.

An objective turns a micro-batch of its examples into a batch (`collate`) and returns the batch's summed
loss plus summed metrics (`loss_sum`); the loop divides both by the step's unit count, so a logged metric
is a mean over the step's units (e.g. DPO's reward accuracy over the step's pairs). The strategy decides
where `loss_sum` runs (strategy.py: on the model, through FSDP's registered method, on DeepSpeed's
engine.module), so one objective serves one process, DDP, FSDP and DeepSpeed alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from tunesmith.data.render import TokenizedExample
from tunesmith.train.forward import batch_loss_and_hits
from tunesmith.train.packing import ModelBatch, collate


class BatchLayout(Protocol):
    """What `collate` reads of the loop's settings (loop.LoopSettings has it; loop.py imports this module)."""

    pad_id: int
    max_length: int
    packing: bool
    share_prefix: bool
    min_rows: int  # rows of padding fill a batch up to this many (train/compiled_layers.py: row_floor)


class Batch(Protocol):
    """What the loop needs of a collated batch, whatever the objective packs into it."""

    num_real_tokens: int  # tokens of real examples (padding excluded), for throughput

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on `device`."""


class Objective(Protocol):
    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metrics `loss_sum` returns (summed over the batch's units); fixed, so every rank reduces the same ones."""

    def denominator(self, example: Any) -> int:
        """The example's units in the step's loss denominator: trained tokens (SFT), 1 (a DPO pair, a classified text)."""

    def trained_tokens(self, example: Any) -> int:
        """Tokens of the example that carry a loss: the run's token count and throughput."""

    def collate(self, examples: list, settings: BatchLayout) -> Batch:
        """One micro-batch of examples as model inputs (packed or padded as `settings` asks)."""

    def loss_sum(self, model, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss summed over the batch's units, {metric: value summed over them}); not yet normalised."""


@dataclass(frozen=True)
class TokenObjective:
    """Supervised finetuning and continued pretraining: next-token cross-entropy on trained tokens; the logged
    token accuracy is the share of trained tokens the model's argmax predicts right."""

    metric_names: tuple[str, ...] = ("token_accuracy",)

    def denominator(self, example: TokenizedExample) -> int:
        return example.num_trained

    def trained_tokens(self, example: TokenizedExample) -> int:
        return example.num_trained

    def collate(self, examples: list[TokenizedExample], settings: BatchLayout) -> ModelBatch:
        return collate(examples, settings.pad_id, settings.max_length, settings.packing, settings.share_prefix,
                       min_rows=settings.min_rows)

    def loss_sum(self, model, batch: ModelBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, hits = batch_loss_and_hits(model, batch)
        return loss, {"token_accuracy": hits}
