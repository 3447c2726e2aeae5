"""One process, or data parallelism (DDP): every rank holds the whole model and the whole optimizer state.

`DataParallelStrategy` is the training strategy (strategy.py) of train.distributed: ddp, and of any 1-process
run but a DeepSpeed one.

A step's examples are split across ranks; each rank's loss is divided by the step's GLOBAL trained-token
count, and after the step's last backward the gradients are summed across ranks (one all-reduce of all of
them, not DDP's per-bucket averaging) — so N processes compute exactly the gradient one process would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from tunesmith.train.checkpoint import gather_torch_state, load_torch_state
from tunesmith.train.distributed import World
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.strategy import step_unless_diverged, trainable_parameters


@dataclass(frozen=True)
class DataParallelStrategy:
    world: World = World()

    @property
    def lockstep(self) -> bool:
        return False  # no collective inside forward/backward: a rank may run fewer micro-batches

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def wrap(self, model, optimizer, settings):
        return model, optimizer

    def loss_sum(self, model, objective: Objective, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return objective.loss_sum(model, batch)

    def backward(self, model, loss: torch.Tensor, closes_step: bool) -> None:
        loss.backward()

    def sum_gradients(self, model) -> None:
        if self.world.size == 1:
            return
        params = trainable_parameters(model)
        for p in params:
            if p.grad is None:  # a rank whose shard of a short last batch was empty
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # one collective instead of one per tensor
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def clip_and_step(self, model, optimizer, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_norm)
        return step_unless_diverged(norm.item(), optimizer)

    def gather_state(self, model, optimizer) -> tuple[dict[str, torch.Tensor], dict | None]:
        return gather_torch_state(model, optimizer)

    def save_partitions(self, model, staging: Path) -> None:
        return  # every rank holds the same state: rank 0's whole tensors are the checkpoint

    def load_state(self, model, optimizer, checkpoint: Path) -> None:
        load_torch_state(checkpoint, model, optimizer)

    def plain_model(self, model, build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
        return model if self.world.is_main else None  # rank 0's model is whole already
