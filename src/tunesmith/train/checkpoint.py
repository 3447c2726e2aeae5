"""Atomic checkpoints with everything needed to resume exactly: weights, optimizer, schedule, RNG, position.

A checkpoint is written into a hidden temporary directory and renamed into place, so a crash at any
moment leaves either the previous complete checkpoints or a new complete one, never a half-written one.
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

STATE_FILE = "state.json"


@dataclass
class TrainState:
    step: int  # optimizer steps completed
    trained_tokens: int  # trained (loss-bearing) tokens seen so far
    best_valid_loss: float | None = None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that training changes (LoRA weights, or all for a full finetune); tied weights once."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, state: TrainState, keep: int) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:06d}"
    staging = root / f".tmp-step-{state.step:06d}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    save_file(trainable_state(model), str(staging / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / "optim.pt")
    torch.save(
        {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        staging / "rng.pt",
    )
    (staging / STATE_FILE).write_text(json.dumps(asdict(state)))  # written last: marks completeness
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    prune_checkpoints(root, keep)
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


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in complete_checkpoints(root.parent)[:-keep]:
        shutil.rmtree(old)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> TrainState:
    weights = load_file(str(path / "trainable.safetensors"))
    expected = set(trainable_state(model))
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights))[:3], sorted(set(weights) - expected)[:3]
        raise ValueError(
            f"checkpoint {path} does not match this model/method (missing {missing}, unexpected {extra}); "
            "resume with the same base model and method, or start a new --out directory."
        )
    model.load_state_dict(weights, strict=False)
    optim = torch.load(path / "optim.pt", weights_only=False)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    return TrainState(**json.loads((path / STATE_FILE).read_text()))
