"""OpenAI's frequency and presence penalties and logit bias, on the logits of the rows whose requests ask for them.

For each token j that a row has generated c[j] times so far (its own answer; the prompt does not count, as in
vLLM's OpenAI server), before its next token is chosen (OpenAI's formula, "Parameter details" of its API docs):

    logit[j] -= c[j] * frequency_penalty + (c[j] > 0) * presence_penalty
    logit[j] += logit_bias[j]

Greedy choice, temperature and top_p then work on the adjusted logits; the log-probabilities a request may ask for
stay the model's own (engine.token_logprobs reads the logits before this).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from tunesmith.models.decoding.requests import SamplingParams


def adjusts_logits(params: SamplingParams) -> bool:
    return bool(params.frequency_penalty or params.presence_penalty or params.logit_bias)


def penalized(logits: torch.Tensor, asking: Sequence[tuple[int, SamplingParams, Counter]]) -> torch.Tensor:
    """logits (B, V) with each asking row's adjustment: `asking` holds (row index, its request's params, the counts of
    the tokens it has generated). A float32 copy when there is something to change, else `logits` itself, so the
    rows of a batch where nobody asks pay nothing."""
    rows: list[int] = []
    tokens: list[int] = []
    shifts: list[float] = []
    for row, params, counts in asking:
        for token, count in counts.items():
            rows.append(row)
            tokens.append(token)
            shifts.append(-(count * params.frequency_penalty + params.presence_penalty))
        for token, bias in params.logit_bias.items():
            rows.append(row)
            tokens.append(token)
            shifts.append(bias)
    if not rows:
        return logits
    adjusted = logits.to(torch.float32, copy=True)
    adjusted.index_put_((torch.tensor(rows), torch.tensor(tokens)), torch.tensor(shifts), accumulate=True)
    return adjusted
