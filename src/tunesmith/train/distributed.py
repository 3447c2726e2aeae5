"""Data-parallel training over processes started by torchrun or `accelerate launch` (gloo on CPU, nccl on GPU).

Every rank holds the same weights and optimizer state. A step's examples are split across ranks; each
rank's loss is divided by the step's GLOBAL trained-token count (every rank can compute it: the data
order is a pure function of the seed), and gradients are summed across ranks — so N processes compute
exactly the gradient one process would, and checkpoints do not depend on the world size.

With `strategy="fsdp"` the ranks instead hold shards of the weights (sharding.py); the data split and the
global denominator stay the same, and FSDP's reduce-scatter sums the gradients in backward. With
`strategy="deepspeed"` the DeepSpeed engine reduces them (deepspeed.py).
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
    def sharded(self) -> bool:
        """Parameters are FSDP shards: every rank must join every forward (they all-gather together)."""
        return self.strategy == "fsdp" and self.size > 1

    @property
    def lockstep(self) -> bool:
        """Ranks run collectives inside every forward/backward (FSDP, DeepSpeed): equal micro-batch counts."""
        return self.strategy != "ddp" and self.size > 1

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

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.size == 1 or self.strategy != "ddp":  # FSDP's reduce-scatter / DeepSpeed's engine did it
            return
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

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def training_device() -> str:
    """This process's GPU (LOCAL_RANK picks it among the node's GPUs) when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
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
