"""Builders shared by the training recipes: they turn config into data, model, optimizer and settings."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tunesmith.config import DataConfig, RunConfig
from tunesmith.data.formats import LoadedFile, RowError, load_file
from tunesmith.data.render import TokenizedExample, records_to_examples
from tunesmith.models.classifier import bf16_supported
from tunesmith.models.load import load_model
from tunesmith.train.base_anchor import replay_objective
from tunesmith.train.data_parallel import DataParallelStrategy
from tunesmith.train.deepspeed import DeepSpeedStrategy
from tunesmith.train.distributed import World
from tunesmith.train.lora import apply_lora
from tunesmith.train.neftune import add_neftune
from tunesmith.train.forward import causal_lm_of
from tunesmith.train.grouped_attention import use_grouped_attention
from tunesmith.train.loop import LoopSettings
from tunesmith.train.objective import TokenObjective
from tunesmith.train.parent import anchor_to_parent, build_from_parent
from tunesmith.train.replay import ReplayPool
from tunesmith.train.schedule import total_steps
from tunesmith.train.sharding import FSDPStrategy
from tunesmith.train.strategy import Strategy


class InvalidDataError(ValueError):
    """Training data has invalid rows; `errors` lists each with file, line, field and fix."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(
            f"{len(errors)} invalid row(s); fix them, or pass --skip-invalid to train on the valid rows:\n{shown}{more}"
        )


class NoTrainingDataError(ValueError):
    """Nothing to train on: no training file is configured, or none of its rows is valid."""


@dataclass
class TrainingData:
    train: list[TokenizedExample]
    valid: list[TokenizedExample]
    skipped: list[RowError] = field(default_factory=list)
    truncated: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bf16_available() -> bool:
    return bf16_supported(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def load_split(path: Path, tokenizer, config: DataConfig) -> tuple[LoadedFile, list[TokenizedExample]]:
    loaded = load_file(path)
    if loaded.errors and not config.skip_invalid:
        raise InvalidDataError(loaded.errors)
    return loaded, records_to_examples(loaded, tokenizer, config.max_length)


def load_training_data(config: DataConfig, tokenizer) -> TrainingData:
    """Validate and render train (and valid) files; refuse invalid rows unless skip_invalid."""
    if config.train is None:
        raise NoTrainingDataError("no training data: pass --data FILE or set data.train in the config")
    loaded, train = load_split(config.train, tokenizer, config)
    skipped = list(loaded.errors)
    valid: list[TokenizedExample] = []
    if config.valid is not None:
        loaded_valid, valid = load_split(config.valid, tokenizer, config)
        skipped += loaded_valid.errors
    if not train:
        raise NoTrainingDataError(f"{config.train}: no valid rows to train on")
    truncated = sum(e.truncated for e in train + valid)
    return TrainingData(train=train, valid=valid, skipped=skipped, truncated=truncated)


def build_model(config: RunConfig):
    """The model a run trains: the base (LoRA-wrapped or whole), or with model.parent the parent's (parent.py)."""
    if config.model.parent is not None:
        model = build_from_parent(config)
    else:
        model = load_model(config.model.base, attn_implementation=config.model.attn_implementation)
        if config.train.uses_lora:
            model = apply_lora(model, config.lora)
    causal_lm = causal_lm_of(model)
    causal_lm.config.use_cache = False
    if config.train.neftune_alpha is not None:
        add_neftune(causal_lm, config.train.neftune_alpha)
    if config.train.grouped_attention:
        use_grouped_attention(causal_lm)  # sdpa wherever a forward passes no groups (train/forward.py)
    if config.train.activation_checkpointing:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def build_optimizer(model, config: RunConfig) -> torch.optim.Optimizer:
    decay, lora_b, no_decay = [], [], []
    plus = config.lora.plus_lr_ratio if config.train.uses_lora else None
    for name, param in model.named_parameters():
        if param.requires_grad:
            if param.ndim < 2:
                no_decay.append(param)
            else:
                (lora_b if plus is not None and is_lora_b(name) else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lora_b:  # LoRA+: the B matrices' own learning rate; the schedule scales every group's alike
        groups.append({"params": lora_b, "weight_decay": config.train.weight_decay, "lr": config.train.lr * plus})
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.train.lr, betas=(0.9, 0.999),
                                  **adamw_kernel(decay + lora_b + no_decay))
    if config.model.parent is not None and config.model.parent.anchor > 0:
        anchor_to_parent(optimizer, config.model.parent.anchor)  # before a checkpoint loads: anchors to the parent
    return optimizer


def is_lora_b(name: str) -> bool:
    """A LoRA B matrix (the up-projection peft starts at zero), as peft's LoRA+ optimizer tells them: lora_B or
    lora_embedding_B in the parameter's name."""
    return "lora_B" in name or "lora_embedding_B" in name


def adamw_kernel(params: list[torch.Tensor]) -> dict:
    """torch's fused AdamW (one kernel a tensor) where the parameters are plain tensors; FSDP's sharded (DTensor)
    ones keep foreach (bit-identical to the per-tensor loop).

    On the CPU foreach is a loop of ~10 ops a tensor: the demo's 420 LoRA tensors (4.9M values) took 23.4-24.3 ms
    an optimizer step, fused 4.0-4.4 ms (~3.5% of a 0.55 s step); values within 3e-8 of foreach after 50 steps,
    not bit-identical (tests/train/test_loop.py)."""
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in params):
        return {"foreach": True}
    return {"fused": True}


def build_strategy(world: World, deepspeed_json: dict | None) -> Strategy:
    """The strategy `world.strategy` names (train.distributed); one process trains alone under ddp and fsdp.

    `deepspeed_json` is the run's checked DeepSpeed config (deepspeed.check_deepspeed) when it asks for deepspeed.
    """
    if world.strategy == "deepspeed":
        return DeepSpeedStrategy(world, deepspeed_json)
    if world.strategy == "fsdp" and world.size > 1:
        return FSDPStrategy(world)
    return DataParallelStrategy(world)


def loop_settings(config: RunConfig, num_train: int, pad_id: int,
                  strategy: Strategy = DataParallelStrategy(), replay: ReplayPool | None = None) -> LoopSettings:
    t = config.train
    new_per_step = t.batch_size - (replay.per_step if replay is not None else 0)  # epochs count new examples only
    return LoopSettings(
        total_steps=total_steps(num_train, new_per_step, t.epochs, t.max_steps),
        batch_size=t.batch_size,
        micro_batch_size=t.micro_batch_size or t.batch_size,
        max_length=config.data.max_length,
        packing=config.data.packing,
        share_prefix=config.data.share_prefix,
        seed=t.seed,
        bf16=bf16_available() if t.bf16 is None else t.bf16,
        max_grad_norm=t.max_grad_norm,
        log_every=t.log_every,
        eval_every=t.eval_every,
        save_every=t.save_every,
        keep_checkpoints=t.keep_checkpoints,
        report_to=tuple(t.report_to),
        time_budget=t.time_budget,
        early_stopping_patience=t.early_stopping_patience,
        pad_id=pad_id,
        strategy=strategy,
        replay=replay,
        objective=replay_objective(config) if replay is not None else TokenObjective(),
    )


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
