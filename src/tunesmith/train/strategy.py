"""How the ranks share a model, as one object: the training recipe calls it and never asks which it is.

A step is the same recipe under every strategy — collate → forward under autocast → backward → reduce →
clip and step → schedule (loop.py) — but the model may be whole on each rank (data_parallel.py), sharded
by FSDP (sharding.py) or driven by a DeepSpeed engine (deepspeed.py). Each strategy is one class in its
own module that does, its own way, the few things that differ: the loss sum of a batch, backward, the
gradient reduction, clipping and stepping, and gathering, saving and loading the state a checkpoint holds.
What the loss is belongs to the method's objective (objective.py); the strategy only runs it where the
model's parameters are whole (the model itself, FSDP's registered method, DeepSpeed's engine.module).
They share no base class (no implementation inheritance in training code); `Strategy` is the protocol they
meet, and what two of them do alike is a plain function here. `setup.build_strategy` picks one per run,
from `World.strategy`; a new strategy is one new class and one line there.

Two set-up hooks place the model: `shard` before the optimizer is built (it must hold FSDP's shards) and
`wrap` after the schedule (DeepSpeed's engine takes over model and optimizer; the schedule keeps driving the
learning rate of the optimizer it wraps). Methods take the model (or the engine standing in for it) as
their first argument rather than holding it, so a strategy is just the world plus settings, and the loop's
functions keep their plain signatures.
"""
from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Callable, Protocol

import torch

from tunesmith.train.distributed import World
from tunesmith.train.objective import Batch, Objective

TRAINABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → its trainable parameters


class TrainingDiverged(RuntimeError):
    """Loss or gradient became NaN/inf; the last good checkpoint is kept."""


class StepGeometry(Protocol):
    """What `wrap` reads of the loop's settings (loop.LoopSettings has it; loop.py imports this module)."""

    batch_size: int
    micro_batch_size: int
    max_grad_norm: float


class Strategy(Protocol):
    @property
    def world(self) -> World:
        """The processes this strategy spreads the model over."""

    @property
    def lockstep(self) -> bool:
        """Ranks run collectives inside every forward/backward: each must run as many micro-batches as the others."""

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model the optimizer is built over (called before building it: FSDP shards here)."""

    def wrap(self, model, optimizer: torch.optim.Optimizer, settings: StepGeometry):
        """(model, optimizer) the loop trains (called after the schedule is built: DeepSpeed's engine takes over)."""

    def loss_sum(self, model, objective: Objective, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`objective.loss_sum` of a batch (summed loss, summed metrics), run where this strategy needs it."""

    def backward(self, model, loss: torch.Tensor, closes_step: bool) -> None:
        """Backward of a loss already divided by the step's GLOBAL unit count (trained tokens; pairs for DPO: objective.py)."""

    def sum_gradients(self, model) -> None:
        """After the step's last backward: each rank's gradient becomes the sum over all ranks."""

    def clip_and_step(self, model, optimizer, max_norm: float) -> float:
        """Clip to `max_norm`, step, and return the gradient norm (before clipping) over the whole model."""

    def gather_state(self, model, optimizer) -> tuple[dict[str, torch.Tensor], dict | None]:
        """(whole trainable weights, name-keyed optimizer state or None when `save_partitions` holds it), on
        CPU on rank 0; {} and None elsewhere. Collective: every rank calls it."""

    def save_partitions(self, model, staging: Path) -> None:
        """State only each rank holds, written by every rank into the checkpoint being staged. Collective."""

    def load_state(self, model, optimizer, checkpoint: Path) -> None:
        """Weights and optimizer state from a checkpoint; every rank calls it."""

    def plain_model(self, model, build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
        """On rank 0, a plain model holding the trained weights (for export); None elsewhere. Collective."""


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that train, in the model's order; found once per model (a run does not change which train;
    walking the 135M model's parameters took 10 ms a step)."""
    known = TRAINABLE.get(model)
    if known is None:
        known = TRAINABLE[model] = [p for p in model.parameters() if p.requires_grad]
    return known


def step_unless_diverged(grad_norm: float, optimizer: torch.optim.Optimizer) -> float:
    """Step on a finite gradient norm; on NaN/inf zero the gradients and raise, so nothing is applied."""
    if not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"gradient norm became {grad_norm}")
    optimizer.step()
    return grad_norm


def plain_model_on_main(weights: dict[str, torch.Tensor], build: Callable[[], torch.nn.Module],
                        world: World) -> torch.nn.Module | None:
    """Gathered whole trainable tensors loaded into a fresh `build()` (the base model plus adapters) on rank 0.

    Export and merging need whole tensors, which sharded weights (FSDP, DeepSpeed) are not.
    """
    if not world.is_main:
        return None
    plain = build()
    plain.load_state_dict(weights, strict=False)
    return plain
