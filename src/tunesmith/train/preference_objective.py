"""DPO as an objective of the shared loop (objective.py): one example is one preference pair, and counts 1.

A step's loss is the sum of its pairs' losses divided by the step's number of pairs (the loop divides),
so accumulation, packing and the number of processes never change an update, as for supervised training.

A micro-batch holds whole pairs: the chosen and the rejected answer of a pair always go through the model
together, packed into rows with `packing.collate`'s block-diagonal mask (no answer sees another) or one a
row, laid out as [chosen of every pair..., rejected of every pair...] for `ChosenRejected.split`.

The reference model's log-probabilities come from one of two places (dpo.py decides which), unless the loss
needs none (SimPO):
- the same forward weights with the LoRA adapters disabled, in the same micro-batch (no second copy);
- values computed once before training (reference.py), carried on each example into its batch.

`sft_weight` adds the preferred answer's supervised loss as RPO does (TRL's `rpo_alpha`), per pair: its mean
negative log-likelihood per trained token, so that it counts once per pair, like the preference loss.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from tunesmith.data.render import TokenizedExample
from tunesmith.train.lora import adapters_switched_off
from tunesmith.train.objective import BatchLayout
from tunesmith.train.packing import ModelBatch, collate_placed
from tunesmith.train.preference_loss import (
    ChosenRejected,
    batch_example_logps,
    dpo_sigmoid_loss,
    example_index,
    implicit_rewards,
    ipo_loss,
    pair_reward_values,
    per_token,
    simpo_loss,
    simpo_rewards,
)

REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin", "logps/chosen", "logps/rejected")


@dataclass(frozen=True)
class PreferenceExample:
    """One pair, rendered: both sides start with the same prompt tokens; only each answer is trained."""

    chosen: TokenizedExample
    rejected: TokenizedExample
    reference: tuple[float, float] | None = None  # precomputed reference log-probs (chosen, rejected)

    def with_reference(self, chosen: float, rejected: float) -> "PreferenceExample":
        return replace(self, reference=(chosen, rejected))


@dataclass
class PreferenceBatch:
    inputs: ModelBatch  # 2P examples: the chosen answers of the P pairs, then their rejected answers
    index: torch.Tensor  # (R, T) which of the 2P examples each position belongs to; -1 on padding
    trained: ChosenRejected  # (P,) trained tokens of each answer
    reference: ChosenRejected | None  # (P,) precomputed reference log-probs, or None: adapters disabled

    @property
    def num_real_tokens(self) -> int:
        return self.inputs.num_real_tokens

    @property
    def num_examples(self) -> int:
        return 2 * self.trained.chosen.shape[0]

    def to(self, device: torch.device | str) -> "PreferenceBatch":
        move = (lambda pair: None if pair is None else ChosenRejected(pair.chosen.to(device), pair.rejected.to(device)))
        return replace(self, inputs=self.inputs.to(device), index=self.index.to(device),
                       trained=move(self.trained), reference=move(self.reference))


def collate_pairs(pairs: list[PreferenceExample], settings: BatchLayout) -> PreferenceBatch:
    examples = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    trained = ChosenRejected.split(torch.tensor([float(e.num_trained) for e in examples]))
    given = [p.reference for p in pairs]
    reference = None
    if all(r is not None for r in given):
        reference = ChosenRejected(torch.tensor([r[0] for r in given]), torch.tensor([r[1] for r in given]))
    inputs, placed = collate_placed(examples, settings.pad_id, settings.max_length, settings.packing)
    return PreferenceBatch(
        inputs=inputs,
        index=example_index(placed, inputs.input_ids.shape),
        trained=trained,
        reference=reference,
    )


def answer_logps(model, batch: PreferenceBatch) -> ChosenRejected:
    """(P,) summed log-probability of each pair's chosen and rejected answer under `model`."""
    return ChosenRejected.split(batch_example_logps(model, batch.inputs, batch.index, batch.num_examples))


@torch.no_grad()
def adapter_disabled_logps(model, batch: PreferenceBatch) -> ChosenRejected:
    """The reference log-probs: the same weights with the LoRA adapters off, i.e. the base model the run adapts."""
    with adapters_switched_off(model):
        return answer_logps(model, batch)


@dataclass(frozen=True)
class PreferenceObjective:
    beta: float
    loss: str  # "sigmoid" | "ipo" | "simpo"
    sft_weight: float = 0.0
    simpo_gamma: float = 0.5
    metric_names: tuple[str, ...] = REWARD_METRICS

    def denominator(self, example: PreferenceExample) -> int:
        return 1

    def trained_tokens(self, example: PreferenceExample) -> int:
        return example.chosen.num_trained + example.rejected.num_trained

    def collate(self, examples: list[PreferenceExample], settings: BatchLayout) -> PreferenceBatch:
        return collate_pairs(examples, settings)

    def loss_sum(self, model, batch: PreferenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy = answer_logps(model, batch)
        logged = policy  # logps/chosen, logps/rejected: summed, or per token where the loss works per token (TRL's)
        if self.loss == "simpo":  # reference-free: no second forward
            logged = per_token(policy, batch.trained)
            losses, rewards = simpo_loss(logged, self.beta, self.simpo_gamma), simpo_rewards(logged, self.beta)
        else:
            reference = batch.reference if batch.reference is not None else adapter_disabled_logps(model, batch)
            if self.loss == "ipo":
                losses = ipo_loss(policy, reference, self.beta, batch.trained)
            else:
                losses = dpo_sigmoid_loss(policy, reference, self.beta)
            rewards = implicit_rewards(policy, reference, self.beta)
        if self.sft_weight:
            losses = losses - self.sft_weight * policy.chosen / batch.trained.chosen.clamp(min=1)
        # summed over the batch's pairs; the loop divides by the step's pairs: means, as TRL logs them
        values = pair_reward_values(rewards, logged)
        return losses.sum(), {name: v.sum() for name, v in values.items()}

    @property
    def needs_reference(self) -> bool:
        return self.loss != "simpo"
