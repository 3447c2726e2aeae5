"""FSDP: each decoder layer and the root model sharded across the ranks with torch's FSDP2 `fully_shard`.

Parameters, gradients and AdamW state live as DTensor shards (1/N per rank); a layer's full weights exist
only while it runs. The data split and the loss normalisation are those of data parallelism
(distributed.py): each rank divides by the step's GLOBAL trained-token count, so the gradients must be
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
from typing import Callable

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from tunesmith.train.checkpoint import gather_trainable_state
from tunesmith.train.deepspeed import is_deepspeed
from tunesmith.train.distributed import World
from tunesmith.train.forward import batch_loss_sum, causal_lm_of

LOSS_METHOD = "trained_loss_sum"


def shard_model(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """Shard `model` in place (per decoder layer, then the root: embeddings, final norm, head); returns it.

    Call before building the optimizer: it must hold the sharded parameters.
    """
    device = next(model.parameters()).device.type
    mesh = init_device_mesh(device, (world.size,))
    for layer in causal_lm_of(model).get_decoder().layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)  # tied embedding/head weights stay together in the root group
    # The loss runs the decoder and the head separately (loss.py never builds full logits), so it is not
    # `forward`; registering it makes FSDP gather the root's parameters around it.
    setattr(model, LOSS_METHOD, types.MethodType(batch_loss_sum, model))
    register_fsdp_forward_method(model, LOSS_METHOD)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # sum: the loss already carries the global denominator
            module.set_force_sum_reduction_for_comms(True)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def sharded_loss_sum(model: torch.nn.Module, batch) -> torch.Tensor:
    """forward.batch_loss_sum of a sharded model, run where FSDP gathers the root's parameters."""
    return getattr(model, LOSS_METHOD)(batch)


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's global value (e.g. the gradient norm over all shards); a plain tensor unchanged."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def unsharded_for_export(model: torch.nn.Module, build: Callable[[], torch.nn.Module], world: World):
    """On rank 0, a plain model holding the trained weights; None elsewhere. Collective under FSDP.

    Sharded weights (FSDP, DeepSpeed) are gathered to rank 0 and loaded into a fresh `build()` (the base
    model plus adapters): export and merging need whole tensors. Otherwise rank 0's model is used as is.
    """
    if not (is_sharded(model) or is_deepspeed(model)):
        return model if world.is_main else None
    weights = gather_trainable_state(model)  # every rank joins the all-gathers; rank 0 receives
    if not world.is_main:
        return None
    plain = build()
    plain.load_state_dict(weights, strict=False)
    return plain
