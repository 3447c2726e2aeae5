"""GRPO as an objective of the shared loop (objective.py): one example is one prompt, and counts 1.

A micro-batch's prompts are answered first, without gradients: `group_size` answers each, sampled from the model
being trained through the serving engine (models/decoding/offline.answer_token_ids: continuous batching, a prompt's
answers share its prefill), each prompt with a seed drawn from torch's generator (checkpoints keep its state, so a
resumed run samples what the uninterrupted one did). The grader scores every answer (train/graders.py). An answer's
advantage is its reward against its group's: A_i = (r_i − mean) / (std + 1e-4) (scale_rewards "group": GRPO and TRL's
default; std unbiased, as torch.std), or r_i − mean ("none", as Dr. GRPO). Then one forward with gradients over
prompt + answer (packed with the block-diagonal mask; only the answer's tokens, its end-of-turn token included, are
trained) gives each answer token's log-probability logp_t, and a prompt's loss is

    (1/G) Σ_i (1/|o_i|) Σ_t [ −exp(logp_t − sg(logp_t)) · A_i + β · KL_t ],  KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1

which is TRL's GRPOTrainer loss with loss_type "grpo" and one update per generation (num_iterations 1: the clipped
ratio is exactly 1 and its gradient is ∇logp_t · A_i); KL_t is its k3 estimator against the model the run starts
from: the base (the LoRA adapters switched off), or the parent run whose adapter this run continues (the parent's
adapter weights swapped in, base_anchor.weights_swapped_in: no second copy of the model). The loop divides the
step's sum by its prompts: a mean over all the step's answers of their per-token means. A group whose answers all score alike has advantage 0 and teaches nothing (`zero_std_groups`).
With mask_truncated_answers (TRL's mask_truncated_completions) an answer cut at max_new_tokens keeps its reward in its
group's mean and std but its terms are 0: it still counts in the group's mean over G.

In validation (no gradients) each prompt is answered once, greedily, and its loss is its negative reward, so the
validation loss that early stopping and the best checkpoint follow is the reward, negated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tunesmith.config import ConfigError
from tunesmith.data.render import IGNORE_INDEX, TokenizedExample
from tunesmith.models.chat import pad_token_id
from tunesmith.models.decoding.offline import answer_token_ids
from tunesmith.models.decoding.requests import SamplingParams
from tunesmith.train.base_anchor import weights_swapped_in
from tunesmith.train.forward import causal_lm_of, final_hidden
from tunesmith.train.graders import grade_many
from tunesmith.train.lora import adapters_switched_off
from tunesmith.train.loss import trained_token_losses
from tunesmith.train.objective import BatchLayout
from tunesmith.train.packing import ModelBatch, collate_placed
from tunesmith.train.preference_loss import example_index

REWARD_METRICS = ("reward", "reward_std", "answer_tokens", "kl", "zero_std_groups", "clipped_answers", "grader_errors")


class GraderFailed(ConfigError):
    """The grader could not score a single answer of a batch (its template, formula or python code fails on every
    row): training on rewards of 0 would teach nothing, so the run stops with the grader's first error."""


STD_EPSILON = 1e-4  # TRL's: a group with one distinct reward has std 0


@dataclass(frozen=True)
class PromptExample:
    """One prompt row, rendered: its chat template and generation prompt as token ids, and the row the grader reads."""

    prompt_ids: tuple[int, ...]
    item: dict
    line: int
    # answer tokens trained the last time a step drew this prompt (written by loss_sum on the rank that answered
    # it): what the loop counts as the step's trained tokens, known only once the answers are sampled
    trained: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)


@dataclass
class PromptBatch:
    """A micro-batch of prompts; the answers (and their token count) come in `loss_sum`."""

    prompts: list[PromptExample]
    width: int  # packed rows' width (data.max_length): a row holds a prompt once and as many of its answers as fit
    num_real_tokens: int = 0  # prompt + answer tokens of the forward with gradients, set once answered

    def to(self, device: torch.device | str) -> "PromptBatch":
        return self  # token ids live in Python lists until the answers are packed


@dataclass
class Answers:
    """Each prompt's G answers, flattened prompt-major: answers [i·G, (i+1)·G) are prompt i's."""

    tokens: list[list[int]]
    rewards: torch.Tensor  # (P·G,) float32
    clipped: torch.Tensor  # (P·G,) bool: cut at max_new_tokens (no end-of-turn token)
    errors: int  # answers the grader failed on (reward 0.0: a template, formula or python error)

    def trains(self, mask_truncated: bool) -> torch.Tensor:
        """(P·G,) bool: the answers whose tokens are trained."""
        return ~self.clipped if mask_truncated else torch.ones_like(self.clipped)


@dataclass(frozen=True)
class GroupRewardObjective:
    grader: object  # train/graders.Grader
    group_size: int
    max_new_tokens: int
    temperature: float
    top_p: float
    beta: float
    scale_rewards: str  # "group" | "none"
    end_ids: frozenset[int]
    mask_truncated: bool  # answers cut at max_new_tokens train nothing (their rewards still shape the group's)
    tokenizer: object
    reference_weights: dict | None = field(default=None, compare=False)  # the parent's adapter; None: the base
    metric_names: tuple[str, ...] = REWARD_METRICS

    def denominator(self, example: PromptExample) -> int:
        return 1

    def trained_tokens(self, example: PromptExample) -> int:
        return example.trained[0]  # its answers' tokens at the step that just drew it

    def collate(self, examples: list[PromptExample], settings: BatchLayout) -> PromptBatch:
        return PromptBatch(list(examples), settings.max_length)

    def loss_sum(self, model, batch: PromptBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not torch.is_grad_enabled():
            return self.validation_sum(model, batch)
        answers = self.answer(model, batch.prompts)
        device = answers_device(model)
        advantages = group_advantages(answers.rewards, self.group_size, self.scale_rewards).to(device)  # (P·G,)
        examples = [answer_example(prompt.prompt_ids, answers.tokens[i * self.group_size + k])
                    for i, prompt in enumerate(batch.prompts) for k in range(self.group_size)]
        # a prompt's G answers share one copy of it per packed row (packing.py: share_prefix)
        inputs, placed = collate_placed(examples, pad_token_id(self.tokenizer), max(batch.width, max_width(examples)),
                                        packing=True, share_prefix=True)
        batch.num_real_tokens = inputs.num_real_tokens
        inputs = inputs.to(device)
        logps = answer_token_logps(model, inputs)  # (R, T), 0 off the answers
        index = example_index(placed, inputs.input_ids.shape).to(device)  # (R, T)
        trained = (inputs.targets != IGNORE_INDEX) & answers.trains(self.mask_truncated).to(device)[index.clamp(min=0)]
        per_token = -torch.exp(logps - logps.detach()) * advantages[index.clamp(min=0)] * trained
        kl = torch.zeros_like(logps)
        if self.beta:
            with torch.no_grad(), self.reference(model):
                reference = answer_token_logps(model, inputs)
            delta = reference - logps
            kl = (torch.exp(delta) - delta - 1) * trained
            per_token = per_token + self.beta * kl
        lengths = per_example_sum(trained.float(), index, len(examples))  # (P·G,) trained tokens (0: masked)
        for prompt, group in zip(batch.prompts, lengths.view(-1, self.group_size).sum(dim=1).tolist()):
            prompt.trained[0] = int(group)
        lengths = lengths.clamp(min=1)
        per_answer = per_example_sum(per_token, index, len(examples)) / lengths  # (P·G,) per-token means
        loss = per_answer.view(-1, self.group_size).mean(dim=1).sum()  # Σ over prompts of the group mean
        grouped = answers.rewards.view(-1, self.group_size)
        sampled_lengths = torch.tensor([float(len(tokens)) for tokens in answers.tokens])
        metrics = {
            "reward": grouped.mean(dim=1).sum(),
            "reward_std": grouped.std(dim=1).sum(),
            "answer_tokens": sampled_lengths.view(-1, self.group_size).mean(dim=1).sum(),
            "kl": (per_example_sum(kl, index, len(examples)).detach() / lengths).view(-1, self.group_size).mean(dim=1).sum(),
            "zero_std_groups": (grouped.std(dim=1) == 0).float().sum(),
            "clipped_answers": answers.clipped.float().sum() / self.group_size,
            "grader_errors": torch.tensor(answers.errors / self.group_size),
        }
        return loss, metrics

    def reference(self, model):
        """The model the KL term holds the policy to, as a context over `model`."""
        if self.reference_weights is not None:
            return weights_swapped_in(model, self.reference_weights)
        return adapters_switched_off(model)

    def answer(self, model, prompts: list[PromptExample]) -> Answers:
        """G sampled answers to each prompt from the model as it is now, and their rewards."""
        seeds = torch.randint(0, 2**62, (len(prompts),)).tolist()  # torch's generator: restored with a checkpoint
        params = [SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                 n=self.group_size, seed=seed) for seed in seeds]
        tokens = [choice for choices in sampled(model, self.tokenizer, [p.prompt_ids for p in prompts], params)
                  for choice in choices]
        items = [p.item for p in prompts for _ in range(self.group_size)]
        rewards, errors = self.rewards(tokens, items)
        return Answers(tokens, rewards, self.cut(tokens), errors)

    def rewards(self, tokens: list[list[int]], items: list[dict]) -> tuple[torch.Tensor, int]:
        """(each answer's reward, how many the grader failed on); GraderFailed when it failed on all."""
        grades = grade_many(self.grader, self.tokenizer.batch_decode(tokens, skip_special_tokens=True), items)
        failed = [grade for grade in grades if grade.error is not None]
        if failed and len(failed) == len(grades):
            raise GraderFailed(f"the grader {self.grader.name!r} failed on all {len(grades)} answers of a batch, e.g.: "
                               f"{failed[0].error} — fix the grader (tunesmith's /v1/fine_tuning/alpha/graders/run "
                               "or train.graders.grade_many tries it on one answer)")
        return torch.tensor([grade.reward for grade in grades], dtype=torch.float32), len(failed)

    def cut(self, answers: list[list[int]]) -> torch.Tensor:
        """(A,) bool: the answers cut at max_new_tokens, which end without an end-of-turn token."""
        return torch.tensor([not tokens or tokens[-1] not in self.end_ids for tokens in answers], dtype=torch.bool)

    def validation_sum(self, model, batch: PromptBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each prompt answered once, greedily: the loss is the negative summed reward."""
        params = [SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0.0)] * len(batch.prompts)
        tokens = [choices[0] for choices in sampled(model, self.tokenizer, [p.prompt_ids for p in batch.prompts], params)]
        rewards, errors = self.rewards(tokens, [p.item for p in batch.prompts])
        zero = torch.tensor(0.0)
        lengths = torch.tensor([float(len(t)) for t in tokens])
        metrics = {"reward": rewards.sum(), "reward_std": zero, "answer_tokens": lengths.sum(), "kl": zero,
                   "zero_std_groups": zero,
                   "clipped_answers": self.cut(tokens).float().sum(),
                   "grader_errors": torch.tensor(float(errors))}
        return -rewards.sum(), metrics


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """(P·G,) each answer's reward less its group's mean, divided by the group's std (+1e-4) when `scale` is "group"."""
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True) + STD_EPSILON)
    return centred.reshape(-1)


def answer_example(prompt_ids: tuple[int, ...], answer: list[int]) -> TokenizedExample:
    """Prompt + answer as a training example whose labels are the answer's tokens only."""
    return TokenizedExample(list(prompt_ids) + list(answer), [IGNORE_INDEX] * len(prompt_ids) + list(answer))


def answer_token_logps(model, inputs: ModelBatch) -> torch.Tensor:
    """(R, T) float32 log-probability of each trained target under `model`; 0 where nothing is trained."""
    causal_lm = causal_lm_of(model)
    hidden = final_hidden(causal_lm, inputs)  # (R, T, H)
    return -trained_token_losses(hidden, inputs.targets, causal_lm.get_output_embeddings())


def per_example_sum(values: torch.Tensor, index: torch.Tensor, num_examples: int) -> torch.Tensor:
    """(E,) sum of `values` (R, T) over each example's positions (index −1: padding, dropped)."""
    keep = index >= 0
    return torch.zeros(num_examples, dtype=values.dtype, device=values.device).index_add(0, index[keep], values[keep])


def answers_device(model) -> torch.device:
    """Where the model computes: the answers' batch goes there once sampled (the prompts stay lists of ids)."""
    return next(model.parameters()).device


def max_width(examples: list[TokenizedExample]) -> int:
    return max(len(e.input_ids) for e in examples)


@torch.no_grad()
def sampled(model, tokenizer, prompts: list[tuple[int, ...]], params: list[SamplingParams]) -> list[list[list[int]]]:
    """The engine's answers from the model being trained: its transformers model (the peft wrapper's LoRA layers stay
    live in it), in eval mode (no dropout), under the step's autocast (bf16 products, as the step's own forward)."""
    causal_lm = causal_lm_of(model)
    was_training = causal_lm.training
    causal_lm.eval()
    try:
        return answer_token_ids(causal_lm, tokenizer, [list(p) for p in prompts], params,
                                max_rows=max(32, 4 * params[0].n))
    finally:
        causal_lm.train(was_training)
