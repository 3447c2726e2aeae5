"""`data.replay.general_loss: kl_to_base`: replayed general text keeps the model's predictions the base model's.

Replayed with the next-token loss, general text teaches the model that text (its style, its topics), which is not
what forgetting takes away: what a LoRA run should keep is the base model's own predictions on general language.
With kl_to_base a replayed chunk's loss at each of its positions is KL(base || model) over the whole vocabulary.
It is zero while the adapters have changed nothing about general text and pulls back as soon as they have, with
the full distribution as its signal rather than one observed token.

The base's predictions are the same weights with the LoRA adapters disabled (as DPO's in-batch reference,
preference_objective.py): one extra forward of the replayed chunks, without gradients, per step. Hence LoRA only
(config.py refuses kl_to_base for a full finetune). The chunks are forwarded apart from the step's new examples,
since the base forward needs them alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunesmith.data.render import IGNORE_INDEX, TokenizedExample
from tunesmith.train.forward import batch_loss_and_hits, causal_lm_of, final_hidden
from tunesmith.train.objective import BatchLayout, TokenObjective
from tunesmith.train.packing import ModelBatch, collate


@dataclass
class AnchoredExample(TokenizedExample):
    """A replayed general-text chunk trained towards the base model's predictions, not its own next tokens."""


@dataclass
class AnchoredBatch:
    """A step's micro-batch split in two: new examples (next-token loss) and anchored chunks (KL to the base)."""

    tokens: ModelBatch | None
    anchored: ModelBatch | None

    def to(self, device: torch.device | str) -> "AnchoredBatch":
        return AnchoredBatch(*(part.to(device) if part is not None else None for part in (self.tokens, self.anchored)))

    @property
    def num_real_tokens(self) -> int:
        return sum(part.num_real_tokens for part in (self.tokens, self.anchored) if part is not None)


def anchored_kl_and_agreement(model, batch: ModelBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over the batch's trained positions of KL(base || model), positions where both predict the same token)."""
    causal_lm = causal_lm_of(model)
    keep = batch.targets != IGNORE_INDEX
    head = causal_lm.get_output_embeddings()
    student = F.log_softmax(head(final_hidden(causal_lm, batch)[keep]).float(), dim=-1)  # (n, V)
    with torch.no_grad(), model.disable_adapter():
        base = F.log_softmax(head(final_hidden(causal_lm, batch)[keep]).float(), dim=-1)
    kl = F.kl_div(student, base, log_target=True, reduction="sum")  # sum_v p_base (log p_base - log p_model)
    return kl, (student.detach().argmax(-1) == base.argmax(-1)).sum()


@dataclass(frozen=True)
class AnchoredTokenObjective(TokenObjective):
    """Supervised next-token loss on the new examples plus KL(base || model) on anchored chunks, both summed over
    trained positions (the loop divides by the step's trained tokens, the chunks' included). The logged token
    accuracy counts an anchored position as right when the model's most likely token is the base's."""

    def collate(self, examples: list[TokenizedExample], settings: BatchLayout) -> AnchoredBatch:
        plain = [e for e in examples if not isinstance(e, AnchoredExample)]
        anchored = [e for e in examples if isinstance(e, AnchoredExample)]
        part = lambda group: collate(group, settings.pad_id, settings.max_length, settings.packing) if group else None  # noqa: E731
        return AnchoredBatch(part(plain), part(anchored))

    def loss_sum(self, model, batch: AnchoredBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sums = [batch_loss_and_hits(model, batch.tokens)] if batch.tokens is not None else []
        if batch.anchored is not None:
            sums.append(anchored_kl_and_agreement(model, batch.anchored))
        return sum(loss for loss, _ in sums), {"token_accuracy": sum(hits for _, hits in sums)}
