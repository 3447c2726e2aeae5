"""Atomic checkpoints with everything needed to resume exactly: weights, optimizer, schedule, RNG, position.

A checkpoint is written into a hidden temporary directory and renamed into place, so a crash at any
moment leaves either the previous complete checkpoints or a new complete one, never a half-written one.

Checkpoints hold whole tensors keyed by parameter name, whatever the strategy and world size: under FSDP
the shards are gathered to rank 0 for saving (torch.distributed.checkpoint.state_dict, full state dicts
offloaded to CPU), and a loaded checkpoint is re-sharded by each rank. A checkpoint from 2 FSDP processes
resumes on 1 process, under DDP, or on 4 FSDP processes, and the other way round.

What differs by strategy (how the state is gathered, what only each rank holds, how it is loaded back) is
the strategy's (strategy.py); the torch-state functions here serve single process, DDP and FSDP alike.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from tunesmith.train.strategy import Strategy

STATE_FILE = "state.json"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by another model, method or strategy than the run resuming it; the message says which."""


@dataclass
class TrainState:
    step: int  # optimizer steps completed
    trained_tokens: int  # trained (loss-bearing) tokens seen so far
    best_valid_loss: float | None = None
    time_budget: dict | None = None  # train.time_budget's decision (time_budget.py): its total_steps ends the run
    best_step: int | None = None  # the step of the lowest validation loss so far
    evals_since_best: int = 0  # validations since then that did not improve on it (train.early_stopping_patience)
    stopped_early: bool = False  # the patience ran out: the run is finished


FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0 when sharded


def trainable_names(model: torch.nn.Module) -> list[str]:
    """Parameters that training changes (LoRA weights, or all for a full finetune); tied weights once."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def trainable_of(full: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable entries of a gathered whole state dict; {} on the ranks that received nothing."""
    return {name: full[name].contiguous() for name in names} if full else {}


def gather_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Whole trainable tensors on CPU. Collective when sharded: every rank calls, rank 0 gets them, others {}."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return trainable_of(get_model_state_dict(model, options=options), trainable_names(model))


def gather_torch_state(model: torch.nn.Module, optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Whole trainable weights and the name-keyed optimizer state, on rank 0 (collective when sharded)."""
    return gather_trainable_state(model), get_optimizer_state_dict(model, optimizer, options=FULL_ON_CPU)


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, state: TrainState, keep: int,
                    strategy: Strategy, protect: int | None = None) -> Path:
    """Every rank calls this (gathering shards is collective); only the main rank writes files. The `keep`
    newest checkpoints stay, and the one of step `protect` (the best validation's, for early stopping)."""
    weights, optim = strategy.gather_state(model, optimizer)
    writer = strategy.world.is_main
    root = run_dir / "checkpoints"
    final, staging = root / checkpoint_name(state.step), root / f".tmp-{checkpoint_name(state.step)}"
    if writer:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    strategy.save_partitions(model, staging)  # every rank, into the staging directory the writer just made
    if not writer:
        return final
    save_file(weights, str(staging / "trainable.safetensors"))
    torch.save({"optimizer": optim, "scheduler": scheduler.state_dict()}, staging / "optim.pt")
    torch.save(
        {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        staging / "rng.pt",
    )
    (staging / STATE_FILE).write_text(json.dumps(asdict(state)))  # written last: marks completeness
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    prune_checkpoints(root, keep, protect)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(root: Path, keep: int, protect: int | None = None) -> None:
    for old in complete_checkpoints(root.parent)[:-keep]:
        if old.name != (checkpoint_name(protect) if protect is not None else None):
            shutil.rmtree(old)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def load_checkpoint(path: Path, model, optimizer, scheduler, strategy: Strategy) -> TrainState:
    """Every rank loads the whole tensors; under FSDP each keeps its own shard."""
    strategy.load_state(model, optimizer, path)
    scheduler.load_state_dict(torch.load(path / "optim.pt", weights_only=False)["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    return TrainState(**json.loads((path / STATE_FILE).read_text()))


def load_torch_state(path: Path, model, optimizer) -> None:
    """Name-keyed weights and optimizer state into a torch model (whole, or re-sharded by FSDP)."""
    weights = load_file(str(path / "trainable.safetensors"))
    expected = set(trainable_names(model))
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights))[:3], sorted(set(weights) - expected)[:3]
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match this model/method (missing {missing}, unexpected {extra}); "
            "resume with the same base model and method, or start a new --out directory."
        )
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    optim = torch.load(path / "optim.pt", weights_only=False)["optimizer"]
    if optim is None:
        raise CheckpointMismatchError(f"checkpoint {path} was written by a DeepSpeed run: resume it with train.distributed: deepspeed "
                         "and the same number of processes")
    if all(isinstance(key, int) for key in optim["state"]):  # written before name-keyed states
        optimizer.load_state_dict(optim)
    else:
        set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
