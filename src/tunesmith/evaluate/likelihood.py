"""Per-example summed token losses in batches: held-out loss/perplexity and multiple-choice scores.

The loss math is the training loss (the per-token terms `trained_token_loss_sum` adds up, summed per example)
over batches packed as training packs them, so an evaluation loss means exactly what the training log's
valid_loss means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from tunesmith.data.render import TokenizedExample, render_chat
from tunesmith.train.forward import causal_lm_of, final_hidden
from tunesmith.train.loss import trained_token_losses
from tunesmith.train.packing import SHARED_ROW_TOKENS, collate_placed


@dataclass
class LossSum:
    total: float  # summed cross-entropy (nats) over the example's trained tokens
    tokens: int  # trained tokens


@torch.inference_mode()
def example_loss_sums(model, examples: list[TokenizedExample], pad_id: int, batch_size: int = 8) -> list[LossSum]:
    """One LossSum per example, in input order.

    Batches of `batch_size` examples of similar lengths are packed as training packs them (train/packing.py): the
    beginning they share (a chat template's system prompt) computed once per row, each example masked to that and
    itself. The demo's 300 validation rows (~52 tokens each, 21 of them the system prompt): see
    benchmarks/README.md, "eval_speed.py"."""
    causal_lm = causal_lm_of(model)
    was_training = causal_lm.training
    causal_lm.eval()
    device = next(causal_lm.parameters()).device
    head = causal_lm.get_output_embeddings()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    sums: list[LossSum | None] = [None] * len(examples)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            chunk = [examples[i] for i in indices]
            widest = max(len(example.input_ids) for example in chunk)
            batch, placed = collate_placed(chunk, pad_id, max(widest, SHARED_ROW_TOKENS), packing=True, share_prefix=True)
            batch = batch.to(device)
            hidden = final_hidden(causal_lm, batch)  # (R, T, H)
            losses = trained_token_losses(hidden, batch.targets, head).cpu()  # (R, T)
            for index, (row, columns) in zip(indices, placed):
                sums[index] = LossSum(float(losses[row, columns].sum()), examples[index].num_trained)
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
