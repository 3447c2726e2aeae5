"""Preference losses (DPO sigmoid, IPO, SimPO) from the log-probabilities of each pair's two answers.

A pair's answers are scored by the summed log-probability of their trained tokens (the answer through its
end-of-turn token) under the policy and under the reference model. With log-ratios
rho = log pi(y|x) - log pi_ref(y|x) and the implicit reward r = beta * rho, per pair, as TRL's
`DPOTrainer._compute_loss` (trl 1.16, reverse-KL divergence, no label smoothing) computes them:

    sigmoid:  -log sigmoid(beta * (rho_chosen - rho_rejected))
    ipo:      (rho_chosen / n_chosen - rho_rejected / n_rejected - 1 / (2 beta))^2,   n = trained tokens

(TRL divides IPO's log-ratios by the answer length; its comment says the IPO authors confirmed this.)
SimPO has no reference model: with each answer's mean log-probability per trained token a = log pi(y|x) / n,

    simpo:    -log sigmoid(beta * (a_chosen - a_rejected) - gamma)

as TRL's CPOTrainer computes it (loss_type "simpo", its logits less gamma / beta, times beta); its implicit
reward is beta * a.
Losses are returned per pair: a step's loss is their sum over its micro-batches divided by the step's
number of pairs, which for one micro-batch is TRL's batch mean.

Log-probabilities come from `trained_token_loss_sum`, the chunked output head on trained positions only,
called once per example with the other examples' targets masked: each trained position meets the head
once, as in supervised training, and the cross-entropy math lives only there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunesmith.data.render import IGNORE_INDEX
from tunesmith.train.forward import causal_lm_of, decoder_hidden
from tunesmith.train.loss import trained_token_loss_sum
from tunesmith.train.packing import ModelBatch, Placement


@dataclass
class ChosenRejected:
    """One value per pair for its preferred (chosen) and its non-preferred (rejected) answer."""

    chosen: torch.Tensor  # (P,)
    rejected: torch.Tensor  # (P,)

    @classmethod
    def split(cls, per_example: torch.Tensor) -> "ChosenRejected":
        """(2P,) values laid out as [chosen of every pair..., rejected of every pair...] (TRL's batch order)."""
        chosen, rejected = per_example.chunk(2)
        return cls(chosen, rejected)


def example_index(placed: list[Placement], shape: tuple[int, int]) -> torch.Tensor:
    """(R, T) index of the example at each position of a collated batch; -1 on padding.

    `placed` is where `packing.collate_placed` put each example, `shape` its input_ids' shape.
    """
    index = torch.full(tuple(shape), -1, dtype=torch.long)
    for i, (row, columns) in enumerate(placed):
        index[row, columns] = i
    return index


def example_logps(
    hidden: torch.Tensor,  # (R, T, H) final hidden states, or (R, T, V) logits with output_head=torch.nn.Identity()
    targets: torch.Tensor,  # (R, T) next-token ids, IGNORE_INDEX where not trained
    index: torch.Tensor,  # (R, T) example at each position (see `example_index`); others are ignored
    num_examples: int,
    output_head: torch.nn.Module,  # H -> V
) -> torch.Tensor:  # (E,) summed log-probability of each example's trained targets
    sums = [trained_token_loss_sum(hidden, targets.masked_fill(index != e, IGNORE_INDEX), output_head) for e in range(num_examples)]
    return -torch.stack(sums)


def batch_example_logps(model, batch: ModelBatch, index: torch.Tensor, num_examples: int) -> torch.Tensor:
    """(E,) summed log-probabilities of each example's trained tokens: one decoder pass, then the head per example."""
    causal_lm = causal_lm_of(model)
    hidden = decoder_hidden(causal_lm, batch)  # (R, T, H)
    return example_logps(hidden, batch.targets, index.to(hidden.device), num_examples, causal_lm.get_output_embeddings())


def log_ratios(policy: ChosenRejected, reference: ChosenRejected) -> ChosenRejected:
    """log pi(y|x) - log pi_ref(y|x) per answer; the reference carries no gradient."""
    return ChosenRejected(policy.chosen - reference.chosen.detach(), policy.rejected - reference.rejected.detach())


def dpo_sigmoid_loss(policy: ChosenRejected, reference: ChosenRejected, beta: float) -> torch.Tensor:  # (P,)
    ratios = log_ratios(policy, reference)
    return -F.logsigmoid(beta * (ratios.chosen - ratios.rejected))


def ipo_loss(policy: ChosenRejected, reference: ChosenRejected, beta: float, trained_tokens: ChosenRejected) -> torch.Tensor:  # (P,)
    """IPO on per-token log-ratios: the squared loss would otherwise grow with the answers' lengths."""
    ratios = per_token(log_ratios(policy, reference), trained_tokens)
    return (ratios.chosen - ratios.rejected - 1 / (2 * beta)) ** 2


def per_token(summed: ChosenRejected, trained_tokens: ChosenRejected) -> ChosenRejected:
    """Each answer's summed value (a log-probability, a log-ratio) per trained token."""
    return ChosenRejected(summed.chosen / trained_tokens.chosen.clamp(min=1),
                          summed.rejected / trained_tokens.rejected.clamp(min=1))


def simpo_loss(means: ChosenRejected, beta: float, gamma: float) -> torch.Tensor:  # (P,)
    """From each answer's mean log-probability per token (`per_token` of the policy's)."""
    return -F.logsigmoid(beta * (means.chosen - means.rejected) - gamma)


def simpo_rewards(means: ChosenRejected, beta: float) -> ChosenRejected:
    """beta * mean log-prob per token, detached: SimPO's implicit reward (no reference)."""
    return ChosenRejected(beta * means.chosen.detach(), beta * means.rejected.detach())


def implicit_rewards(policy: ChosenRejected, reference: ChosenRejected, beta: float) -> ChosenRejected:
    """beta * log-ratio per answer, detached: what the metrics and the `preference` eval report."""
    ratios = log_ratios(policy, reference)
    return ChosenRejected(beta * ratios.chosen.detach(), beta * ratios.rejected.detach())


def pair_reward_values(rewards: ChosenRejected, policy: ChosenRejected) -> dict[str, torch.Tensor]:
    """(P,) per pair: each reward, whether the chosen answer wins, the margin, each answer's log-prob."""
    return {
        "rewards/chosen": rewards.chosen,
        "rewards/rejected": rewards.rejected,
        "rewards/accuracy": (rewards.chosen > rewards.rejected).double(),  # 0.4, not float32 0.40000001
        "rewards/margin": rewards.chosen - rewards.rejected,
        "logps/chosen": policy.chosen.detach(),
        "logps/rejected": policy.rejected.detach(),
    }


def reward_metrics(rewards: ChosenRejected, policy: ChosenRejected) -> dict[str, float]:
    """Means over the pairs given (pass all of a step's pairs, not micro-batch means).

    TRL logs the same values as `rewards/accuracies` and `rewards/margins`.
    """
    return {name: values.mean().item() for name, values in pair_reward_values(rewards, policy).items()}
