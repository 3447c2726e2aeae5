"""FSDP: each decoder layer and the root model sharded across the ranks with torch's FSDP2 `fully_shard`.

`FSDPStrategy` is the training strategy (strategy.py) of a run with train.distributed: fsdp on 2+ processes.

Parameters, gradients and AdamW state live as DTensor shards (1/N per rank); a layer's full weights exist
only while it runs. The data split and the loss normalisation are those of data parallelism
(data_parallel.py): each rank divides by the step's GLOBAL trained-token count, so the gradients must be
summed, not averaged — the gradient divide factor is 1 and the reduce-scatter uses plain SUM (gloo has
no PREMUL_SUM) — and fsdp, ddp and one process compute the same step.

Why torch's `fully_shard` and not accelerate's FullyShardedDataParallelPlugin: accelerate (1.15) enables
FSDP only for GPU-type backends; on CPU it silently keeps MULTI_CPU data parallelism (measured: two gloo
processes with Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2)) prepare
a DistributedDataParallel model with whole parameters). `fully_shard` shards on CPU/gloo and GPU/nccl
alike, so the path tested here is the path that runs there; torchrun or `accelerate launch` start it.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from tunesmith.train.checkpoint import gather_torch_state, gather_trainable_state, load_torch_state
from tunesmith.train.distributed import World
from tunesmith.train.forward import causal_lm_of
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.strategy import plain_model_on_main, step_unless_diverged, trainable_parameters

LOSS_METHOD = "objective_loss_sum"


def objective_loss_sum(model, objective: Objective, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's loss on `model`: bound to the sharded model as LOSS_METHOD so FSDP gathers around it."""
    return objective.loss_sum(model, batch)


def shard_model(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """Shard `model` in place (per decoder layer, then the root: embeddings, final norm, head); returns it.

    Call before building the optimizer: it must hold the sharded parameters.
    """
    device = next(model.parameters()).device.type
    mesh = init_device_mesh(device, (world.size,))
    for layer in causal_lm_of(model).get_decoder().layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)  # tied embedding/head weights stay together in the root group
    # An objective runs the decoder and the head separately (loss.py never builds full logits), so its loss
    # is not `forward`; registering it makes FSDP gather the root's parameters around it.
    setattr(model, LOSS_METHOD, types.MethodType(objective_loss_sum, model))
    register_fsdp_forward_method(model, LOSS_METHOD)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # sum: the loss already carries the global denominator
            module.set_force_sum_reduction_for_comms(True)
    return model


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's global value (e.g. the gradient norm over all shards); a plain tensor unchanged."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@dataclass(frozen=True)
class FSDPStrategy:
    world: World

    @property
    def lockstep(self) -> bool:
        return True  # every forward all-gathers, every backward reduce-scatters: all ranks take part

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        return shard_model(model, self.world)

    def wrap(self, model, optimizer, settings):
        return model, optimizer

    def loss_sum(self, model, objective: Objective, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return getattr(model, LOSS_METHOD)(objective, batch)  # where FSDP gathers the root's parameters around it

    def backward(self, model, loss: torch.Tensor, closes_step: bool) -> None:
        loss.backward()

    def sum_gradients(self, model) -> None:
        return  # FSDP's reduce-scatter summed them in backward

    def clip_and_step(self, model, optimizer, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_norm)
        return step_unless_diverged(full_value(norm).item(), optimizer)

    def gather_state(self, model, optimizer) -> tuple[dict[str, torch.Tensor], dict | None]:
        return gather_torch_state(model, optimizer)  # the shards gathered to whole tensors on rank 0

    def save_partitions(self, model, staging: Path) -> None:
        return  # gather_state holds everything: no checkpoint depends on the world size

    def load_state(self, model, optimizer, checkpoint: Path) -> None:
        load_torch_state(checkpoint, model, optimizer)  # each rank keeps its shard of the whole tensors

    def plain_model(self, model, build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
        return plain_model_on_main(gather_trainable_state(model), build, self.world)
