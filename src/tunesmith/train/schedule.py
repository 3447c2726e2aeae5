"""Which examples each optimizer step sees, and the learning-rate schedule: pure functions of the seed.

Because the order is recomputed from (seed, epoch), resuming needs only the step number.
"""
from __future__ import annotations

import math

import torch
from transformers import get_scheduler


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def total_steps(num_examples: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    if max_steps is not None:
        return max_steps
    return max(1, math.ceil(epochs * steps_per_epoch(num_examples, batch_size)))


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def step_example_indices(step: int, num_examples: int, batch_size: int, seed: int) -> tuple[int, list[int]]:
    """(epoch, example indices) for 0-based optimizer step `step`; the last batch of an epoch may be short."""
    per_epoch = steps_per_epoch(num_examples, batch_size)
    epoch, within = divmod(step, per_epoch)
    order = epoch_order(num_examples, seed, epoch)
    return epoch, order[within * batch_size : (within + 1) * batch_size]


def micro_batches(indices: list[int], micro_batch_size: int) -> list[list[int]]:
    return [indices[i : i + micro_batch_size] for i in range(0, len(indices), micro_batch_size)]


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup_ratio: float, steps: int):
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[kind]
    return get_scheduler(name, optimizer, num_warmup_steps=int(warmup_ratio * steps), num_training_steps=steps)
