"""Next-token choice for a batch whose rows each have their own temperature, top_p and random generator.

Rows with temperature 0 take the argmax. Sampled rows draw from their request's own `torch.Generator`,
so a seeded request gives the same tokens whichever other requests share its batch.
"""
from __future__ import annotations

import torch

from tunesmith.models.argmax import argmax


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Logits (B, V) with every token outside each row's nucleus set to -inf; top_p is (B,).

    A token stays when the probability mass of the tokens ranked above it is below top_p, so the most
    likely token always stays.
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # (B, V)
    sorted_logits = sorted_logits.masked_fill(mass_above >= top_p.unsqueeze(1), float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def choose_tokens(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                  generator_groups: list[tuple[torch.Generator, list[int]]]) -> torch.Tensor:
    """Token ids (B,) for logits (B, V).

    temperature, top_p: (B,). generator_groups: (generator, row indices) per sampling request; the rows of
    one request draw together, in row order, from that request's generator.
    """
    logits = logits.float()
    tokens = argmax(logits)  # (B,): the answer for greedy rows
    for generator, rows in generator_groups:
        index = torch.tensor(rows)
        scaled = logits[index] / temperature[index].unsqueeze(1)  # (k, V)
        if bool((top_p[index] < 1).any()):
            scaled = top_p_filter(scaled, top_p[index])
        drawn = torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(1)  # (k,)
        tokens[index] = drawn
    return tokens
