"""Which examples each optimizer step sees, and the learning-rate schedule: pure functions of the seed.

Because the order is recomputed from (seed, epoch), resuming needs only the step number.

The schedule's length may be fixed once during the run (train.time_budget decides it after measuring the
pace): `LRSchedule` keeps its total as an attribute, which LambdaLR saves in its state_dict, so a checkpoint
carries the decided total and a resumed run follows the same learning rate at every step.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


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


class LRSchedule:
    """The learning-rate factor at step `step` (LambdaLR multiplies the peak lr by it): a linear warm-up over
    int(warmup_ratio × total_steps) steps, then cosine or linear decay reaching 0 at `total_steps`, or constant.

    The same values as transformers' get_scheduler("cosine" / "linear" / "constant_with_warmup")
    (test_schedule.py checks it). A callable object rather than a closure so that LambdaLR's state_dict
    saves its attributes: `total_steps` and the warm-up travel with every checkpoint.
    """

    def __init__(self, kind: str, warmup_ratio: float, total_steps: int):
        if kind not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown schedule {kind!r}: use cosine, linear or constant")
        self.kind, self.warmup_ratio = kind, warmup_ratio
        self.set_total(total_steps)

    def set_total(self, total_steps: int) -> None:
        """The step at which the schedule ends; the warm-up stays the same fraction of it."""
        self.total_steps = total_steps
        self.warmup_steps = int(self.warmup_ratio * total_steps)

    def __call__(self, step: int) -> float:
        warmup, total = self.warmup_steps, self.total_steps
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if self.kind == "constant":
            return 1.0
        if self.kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup_ratio: float, steps: int) -> LambdaLR:
    return LambdaLR(optimizer, LRSchedule(kind, warmup_ratio, steps))


def fix_total_steps(scheduler: LambdaLR, total: int) -> None:
    """End the schedule at step `total` from now on, and give the optimizer the new schedule's lr for the next
    step at once (LambdaLR would only recompute it at its next step()). Steps already taken keep their lr."""
    for schedule in scheduler.lr_lambdas:  # one LRSchedule object, repeated per parameter group
        schedule.set_total(total)
    scheduler._last_lr = [base * schedule(scheduler.last_epoch)
                          for base, schedule in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, scheduler._last_lr):
        group["lr"] = lr
