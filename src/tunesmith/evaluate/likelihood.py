"""Per-example summed token losses in batches: held-out loss/perplexity and multiple-choice scores.

The loss math is the training loss (`trained_token_loss_sum`), applied row by row to one batched
forward pass, so an evaluation loss means exactly what the training log's valid_loss means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from tunesmith.data.render import TokenizedExample, render_chat
from tunesmith.train.forward import causal_lm_of
from tunesmith.train.loss import trained_token_loss_sum
from tunesmith.train.packing import collate


@dataclass
class LossSum:
    total: float  # summed cross-entropy (nats) over the example's trained tokens
    tokens: int  # trained tokens


@torch.inference_mode()
def example_loss_sums(model, examples: list[TokenizedExample], pad_id: int, batch_size: int = 8) -> list[LossSum]:
    """One LossSum per example, in input order; batches group similar lengths to waste little padding."""
    causal_lm = causal_lm_of(model)
    was_training = causal_lm.training
    causal_lm.eval()
    device = next(causal_lm.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    sums: list[LossSum | None] = [None] * len(examples)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            width = max(len(examples[i].input_ids) for i in indices)
            batch = collate([examples[i] for i in indices], pad_id, width, packing=False)
            hidden = causal_lm.get_decoder()(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
            ).last_hidden_state  # (R, T, H)
            targets = batch.targets.to(device)  # (R, T)
            head = causal_lm.get_output_embeddings()
            for row, index in enumerate(indices):
                loss = trained_token_loss_sum(hidden[row : row + 1], targets[row : row + 1], head)
                sums[index] = LossSum(float(loss), examples[index].num_trained)
    finally:
        causal_lm.train(was_training)
    return sums  # type: ignore[return-value]


def mean_loss(sums: list[LossSum]) -> dict[str, float]:
    """Token-weighted mean loss over all examples (as training normalises it) and its perplexity."""
    tokens = sum(s.tokens for s in sums)
    loss = sum(s.total for s in sums) / tokens if tokens else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf"), "tokens": tokens}


def choice_scores(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    choices: list[list[str]],
    max_length: int = 512,
    normalize: str = "sum",
    batch_size: int = 8,
) -> list[list[float]]:
    """Log-likelihood of each choice as the assistant's reply to its prompt (end-of-turn token included).

    All (prompt, choice) pairs of all questions are scored in shared batches; `normalize="mean"` divides
    by the choice's token count.
    """
    examples = [
        render_chat(tokenizer, prompt + [{"role": "assistant", "content": choice}], max_length)
        for prompt, options in zip(prompts, choices)
        for choice in options
    ]
    sums = iter(example_loss_sums(model, examples, pad_id(tokenizer), batch_size))
    scores = []
    for options in choices:
        taken = [next(sums) for _ in options]
        scores.append([-s.total / (s.tokens if normalize == "mean" else 1) for s in taken])
    return scores


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
