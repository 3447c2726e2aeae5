"""`data.replay.general_loss: kl_to_base`: replayed general text keeps the model's predictions the base model's.

Replayed with the next-token loss, general text teaches the model that text (its style, its topics), which is not
what forgetting takes away: what a LoRA run should keep is the base model's own predictions on general language.
With kl_to_base a replayed chunk's loss at each of its positions is KL(base || model) over the whole vocabulary.
It is zero while the adapters have changed nothing about general text and pulls back as soon as they have, with
the full distribution as its signal rather than one observed token.

The base's predictions are the same weights with the LoRA adapters disabled (as DPO's in-batch reference,
preference_objective.py), so LoRA only (config.py refuses kl_to_base for a full finetune). The chunks are packed
into the step's forward with the new examples (the model's side costs next to nothing more); the base's side is
one extra forward of the chunks alone, without gradients, one row each.

`kl_to_parent` (a LoRA run continuing its parent's adapter) anchors the same way to the parent run instead: the
parent's adapter weights, read from its adapter/ file, are swapped into the trainable LoRA parameters for the
reference forward (no copy, put back before the backward). KL to the base would pull the parent's own training
back out with the drift; KL to the parent keeps what the parent did on general text and lets the update move
only where its new data asks.

`data.replay.earlier_loss: kl_to_parent` treats replayed rows of the ancestors' training files the same way, at
their answer tokens: the update keeps the parent's whole answer distribution on earlier questions (what it had
generalised from them, not only the trained tokens), as replay with stored logits does (DER, Buzzega et al. 2020).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tunesmith.config import ConfigError, RunConfig
from tunesmith.data.render import IGNORE_INDEX, TokenizedExample
from tunesmith.models.argmax import argmax
from tunesmith.train.forward import causal_lm_of, final_hidden
from tunesmith.train.lora import adapters_switched_off
from tunesmith.train.loss import trained_token_loss_and_hits
from tunesmith.train.objective import BatchLayout, TokenObjective
from tunesmith.train.packing import ModelBatch, collate, collate_placed
from tunesmith.train.parent import ADAPTER_WEIGHTS, load_parent


@dataclass
class AnchoredExample(TokenizedExample):
    """A replayed example (a general-text chunk, or an earlier run's row) trained towards the reference model's
    predictions at its trained positions, not towards its own next tokens."""


@dataclass
class AnchoredBatch:
    """A micro-batch of new examples and anchored chunks, packed together (`tokens`, whose targets leave the
    chunks out), with the flat positions of the chunks' trained tokens in it (`anchor_index`, chunk by chunk) and
    the chunks alone, one row each (`anchored`), for the base's forward: its trained positions come in the same order."""

    tokens: ModelBatch
    anchor_index: torch.Tensor  # (n,) positions in tokens.input_ids.flatten()
    anchored: ModelBatch | None

    def to(self, device: torch.device | str) -> "AnchoredBatch":
        return AnchoredBatch(self.tokens.to(device), self.anchor_index.to(device),
                             self.anchored.to(device) if self.anchored is not None else None)

    @property
    def num_real_tokens(self) -> int:
        return self.tokens.num_real_tokens

    @property
    def rows(self) -> int:
        return self.tokens.rows


def collate_anchored(examples: list[TokenizedExample], settings: BatchLayout) -> AnchoredBatch:
    tokens, placed = collate_placed(examples, settings.pad_id, settings.max_length, settings.packing, settings.share_prefix,
                                    shareable=[not isinstance(e, AnchoredExample) for e in examples],  # chunks: one span
                                    min_rows=settings.min_rows)
    width, flat, chunks = tokens.targets.shape[1], [], []
    for example, (row, span) in zip(examples, placed):
        if isinstance(example, AnchoredExample):
            flat.append(row * width + span.start + (tokens.targets[row, span] != IGNORE_INDEX).nonzero().flatten())
            tokens.targets[row, span] = IGNORE_INDEX  # no next-token loss on them
            chunks.append(example)
    anchored = collate(chunks, settings.pad_id, settings.max_length, packing=False) if chunks else None
    return AnchoredBatch(tokens, torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long), anchored)


@contextmanager
def weights_swapped_in(model, weights: dict[str, torch.Tensor]):
    """The trainable LoRA parameters' data replaced by `weights` (keyed as peft saves an adapter: without the
    adapter's name) and put back: the parent model (in eval mode: no dropout), with no copy of anything."""
    swapped, was_training = [], model.training
    for name, param in model.named_parameters():
        key = name.replace(".default.", ".")
        if param.requires_grad and key in weights:
            if weights[key].device != param.device:
                weights[key] = weights[key].to(param.device)  # once: the dict keeps the moved copy
            swapped.append((param, param.data))
            param.data = weights[key]
    if len(swapped) != len(weights):
        raise ValueError(f"the parent's adapter has {len(weights)} weights, {len(swapped)} match this run's adapter")
    model.eval()  # the parent's predictions, without the adapters' dropout
    try:
        yield
    finally:
        model.train(was_training)
        for param, data in swapped:
            param.data = data


def parent_adapter_weights(config: RunConfig) -> dict[str, torch.Tensor]:
    """The parent run's exported adapter weights (float32, keyed as peft saves them), for kl_to_parent."""
    parent = load_parent(config.model.parent.run)
    if not parent.uses_lora:
        raise ConfigError(f"data.replay: kl_to_parent: {parent.run_dir} is not a LoRA run (no adapter to swap in) — "
                          "use kl_to_base for general text, next_token for earlier data")
    return {key: tensor.float() for key, tensor in load_file(parent.adapter_dir / ADAPTER_WEIGHTS).items()}


def replay_objective(config: RunConfig) -> TokenObjective:
    """The objective of a run with data.replay: next-token on everything, or KL on the general chunks towards
    the base or the parent (data.replay.general_loss) and/or on replayed earlier data towards the parent
    (data.replay.earlier_loss; config.py refuses a run that would need both references)."""
    replay = config.data.replay
    if "kl_to_parent" in (replay.general_loss, replay.earlier_loss):
        return AnchoredTokenObjective(parent_weights=parent_adapter_weights(config))
    if replay.general_loss == "kl_to_base":
        return AnchoredTokenObjective()
    return TokenObjective()


def base_kl_and_agreement(model, student_hidden: torch.Tensor, anchored: ModelBatch,
                          reference_weights: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL(reference || model) summed over the anchored positions, positions where both predict the same token).
    `student_hidden` (n, H): the model's final hidden states at the chunks' trained positions, in `anchored`'s order.
    The reference is the base (adapters off), or the model with `reference_weights` (the parent's adapter) in."""
    causal_lm = causal_lm_of(model)
    head = causal_lm.get_output_embeddings()
    student = F.log_softmax(head(student_hidden).float(), dim=-1)  # (n, V)
    reference = adapters_switched_off(model) if reference_weights is None else weights_swapped_in(model, reference_weights)
    with torch.no_grad(), reference:
        base_hidden = final_hidden(causal_lm, anchored)[anchored.targets != IGNORE_INDEX]
        base = F.log_softmax(head(base_hidden).float(), dim=-1)
    kl = F.kl_div(student, base, log_target=True, reduction="sum")  # sum_v p_base (log p_base - log p_model)
    return kl, (argmax(student.detach()) == argmax(base)).sum()


@dataclass(frozen=True)
class AnchoredTokenObjective(TokenObjective):
    """Supervised next-token loss on the new examples plus KL(reference || model) on anchored chunks, both summed
    over trained positions (the loop divides by the step's trained tokens, the chunks' included). The reference is
    the base, or with `parent_weights` the parent. The logged token accuracy counts an anchored position as right
    when the model's most likely token is the reference's."""

    parent_weights: dict[str, torch.Tensor] | None = field(default=None, compare=False, hash=False, repr=False)

    def collate(self, examples: list[TokenizedExample], settings: BatchLayout) -> AnchoredBatch:
        return collate_anchored(examples, settings)

    def loss_sum(self, model, batch: AnchoredBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        causal_lm = causal_lm_of(model)
        hidden = final_hidden(causal_lm, batch.tokens)  # (R, T, H): new examples and chunks in one forward
        loss, hits = trained_token_loss_and_hits(hidden, batch.tokens.targets, causal_lm.get_output_embeddings())
        if batch.anchored is not None:
            kl, agreed = base_kl_and_agreement(model, hidden.flatten(0, 1)[batch.anchor_index], batch.anchored,
                                               self.parent_weights)
            loss, hits = loss + kl, hits + agreed
        return loss, {"token_accuracy": hits}
