"""The processes of a run, started by torchrun or `accelerate launch` (gloo on CPU, nccl on GPU): who am I, how
many are we, where do I train, and the few collectives the loop needs whatever the strategy.

A step's examples are split across ranks; each rank's loss is divided by the step's GLOBAL trained-token
count (every rank can compute it: the data order is a pure function of the seed), so N processes compute
exactly the gradient one process would, and checkpoints do not depend on the world size. How the ranks
share the model — whole (data_parallel.py), FSDP shards (sharding.py) or a DeepSpeed engine (deepspeed.py)
— is the strategy's (strategy.py); `World.strategy` names the one the run asked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    strategy: str = "ddp"  # TrainConfig.distributed
    device: str = "cpu"  # where this rank trains: "cpu", or its local GPU "cuda:LOCAL_RANK"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        return items[self.rank :: self.size]

    def sum(self, value: float) -> float:
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)  # nccl reduces GPU tensors only
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.item()

    def max(self, value: float) -> float:
        """The largest of every rank's `value`, on every rank (so all ranks can take the same decision from it)."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.item()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


class NoGpuForRankError(ValueError):
    """More processes on this machine than it has GPUs; the message says what to launch instead."""


def training_device() -> str:
    """This process's GPU (LOCAL_RANK picks it among the node's GPUs) when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= gpus:  # CUDA would say "invalid device ordinal" at the first tensor moved
        raise NoGpuForRankError(
            f"process {local} of this machine has no GPU: it has {gpus}. Start at most {gpus} process(es) a machine "
            "(--nproc), or hide the GPUs (CUDA_VISIBLE_DEVICES=) to train every process on the CPU with gloo.")
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def init_world(strategy: str = "ddp") -> World:
    """Join the process group when launched with WORLD_SIZE > 1 (torchrun / accelerate launch set it)."""
    size, device = int(os.environ.get("WORLD_SIZE", "1")), training_device()
    if size == 1:
        return World(strategy=strategy, device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), strategy=strategy, device=device)


def leave_world() -> None:
    """Destroy the process group this process joined, if any. Left to interpreter exit, gloo's threads can be torn
    down in the wrong order and abort a rank that finished its work ("terminate called without an active
    exception", SIGABRT: seen in CI on a 2-process FSDP run after the model was written)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
