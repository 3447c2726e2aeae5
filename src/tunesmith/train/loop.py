"""The training loop shared by every method: accumulate, normalise, clip, step, log, evaluate, checkpoint.

Loss normalisation lives here once: each optimizer step's loss is the sum of token losses over all its
micro-batches divided by the step's total number of trained tokens (not a mean of micro-batch means),
so batch 8 × accumulation 1 and batch 1 × accumulation 8 give the same gradient.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tunesmith.data.render import TokenizedExample
from tunesmith.train.checkpoint import TrainState, save_checkpoint
from tunesmith.train.deepspeed import engine_backward, engine_loss_sum, engine_update, is_deepspeed
from tunesmith.train.distributed import World
from tunesmith.train.forward import batch_loss_sum
from tunesmith.train.packing import collate
from tunesmith.train.schedule import micro_batches, step_example_indices, steps_per_epoch
from tunesmith.train.sharding import full_value, is_sharded, sharded_loss_sum


log = logging.getLogger("tunesmith.train")


class TrainingDiverged(RuntimeError):
    """Loss or gradient became NaN/inf; the last good checkpoint is kept."""


class NoTrainedTokensError(ValueError):
    """Every example of a step masks all its tokens, so the step's loss has no denominator."""


@dataclass
class LoopSettings:
    total_steps: int
    batch_size: int
    micro_batch_size: int
    max_length: int
    packing: bool
    seed: int
    bf16: bool
    max_grad_norm: float
    log_every: int
    eval_every: int | None  # None: at each epoch end
    save_every: int
    keep_checkpoints: int
    pad_id: int
    world: World = World()


@dataclass
class StepResult:
    loss: float  # mean loss per trained token over the step
    grad_norm: float
    trained_tokens: int
    real_tokens: int


def autocast(enabled: bool, device: str = "cpu"):
    """bf16 autocast over fp32 weights on the device's type (cpu: AMX/AVX512-BF16; cuda)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def model_loss_sum(model, batch) -> torch.Tensor:
    """Summed trained-token loss of a batch, for a plain model, an FSDP-sharded one or a DeepSpeed engine."""
    if is_sharded(model):
        return sharded_loss_sum(model, batch)
    return engine_loss_sum(model, batch) if is_deepspeed(model) else batch_loss_sum(model, batch)


def local_batches(examples: list[TokenizedExample], world: World, size: int) -> list[tuple[list[TokenizedExample], float]]:
    """This rank's share of `examples` in batches of `size`, each with its loss weight (1, or 0 for a filler).

    FSDP/DeepSpeed ranks run collectives in every forward and backward, so each must run the same number of
    batches: a rank whose share is shorter runs 0-weighted fillers (no gradient; it joins the collectives).
    """
    local = world.shard(examples)
    batches = [([local[i] for i in chunk], 1.0) for chunk in micro_batches(list(range(len(local))), size)]
    if world.lockstep:
        most = math.ceil(math.ceil(len(examples) / world.size) / size)  # rank 0 holds the longest share
        batches += [([examples[0]], 0.0)] * (most - len(batches))
    return batches


def train_step(model, optimizer, scheduler, examples: list[TokenizedExample], settings: LoopSettings) -> StepResult:
    """One optimizer step over `examples`, split into micro-batches whose losses share one denominator.

    Under data parallelism each rank takes its shard of `examples`; the denominator stays global.
    """
    world = settings.world
    trained = sum(e.num_trained for e in examples)  # global: every rank sees the whole step's examples
    if trained == 0:
        raise NoTrainedTokensError("a training step has no trained tokens: every example in it masks all its tokens")
    loss_total, real = 0.0, 0
    batches = local_batches(examples, world, settings.micro_batch_size)
    for index, (chunk, weight) in enumerate(batches):
        batch = collate(chunk, settings.pad_id, settings.max_length, settings.packing).to(settings.world.device)
        with autocast(settings.bf16, settings.world.device):
            loss_sum = model_loss_sum(model, batch) * weight
        if is_deepspeed(model):
            engine_backward(model, loss_sum / trained, closes_step=index == len(batches) - 1, world_size=world.size)
        else:
            (loss_sum / trained).backward()
        loss_total += loss_sum.item()
        real += batch.num_real_tokens * int(weight)
    params = [p for p in model.parameters() if p.requires_grad]
    world.sum_gradients(params)
    loss_total, real = world.sum(loss_total), int(world.sum(real))
    if not math.isfinite(loss_total):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"loss became {loss_total}")
    if is_deepspeed(model):
        grad_norm = engine_update(model)  # DeepSpeed clips (gradient_clipping), steps and zeroes itself
    else:
        grad_norm = full_value(torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)).item()
        if not math.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(f"gradient norm became {grad_norm}")
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_total / trained, grad_norm, trained, real)


@torch.no_grad()
def validation_loss(model, examples: list[TokenizedExample], settings: LoopSettings, batch_size: int = 16) -> float:
    was_training = model.training
    model.eval()
    total, trained = 0.0, 0
    for chunk, weight in local_batches(examples, settings.world, batch_size):
        batch = collate(chunk, settings.pad_id, settings.max_length, settings.packing).to(settings.world.device)
        with autocast(settings.bf16, settings.world.device):
            total += model_loss_sum(model, batch).item() * weight
        trained += batch.num_trained * int(weight)
    model.train(was_training)
    return settings.world.sum(total) / max(settings.world.sum(trained), 1)


class MetricsLog:
    """DIR/metrics.jsonl: one JSON object per line; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def is_out_of_memory(exc: BaseException) -> bool:
    message = str(exc).lower()
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in message or "not enough memory" in message


def halve_micro_batch(optimizer, settings: LoopSettings, exc: BaseException) -> None:
    """Out of memory: accumulate over twice as many, half-size micro-batches (same examples per step)."""
    optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    old = settings.micro_batch_size
    settings.micro_batch_size = max(1, old // 2)
    log.warning("out of memory (%s): micro-batch %d -> %d, global batch stays %d",
                str(exc).splitlines()[0][:120], old, settings.micro_batch_size, settings.batch_size)


def fit(
    model,
    optimizer,
    scheduler,
    train_examples: list[TokenizedExample],
    valid_examples: list[TokenizedExample],
    settings: LoopSettings,
    run_dir: Path,
    state: TrainState,
    on_step: Callable[[int, dict], None] | None = None,
    stop_after: int | None = None,
) -> TrainState:
    """Train from `state.step` to `settings.total_steps` (or to `stop_after`, checkpointed); returns the state."""
    main = settings.world.is_main
    metrics = MetricsLog(run_dir / "metrics.jsonl", state.step) if main else None
    per_epoch = steps_per_epoch(len(train_examples), settings.batch_size)
    model.train()
    window_seconds, window_real, window_trained = 0.0, 0, 0  # training time only: evals and saves excluded
    end = settings.total_steps if stop_after is None else min(stop_after, settings.total_steps)
    while state.step < end:
        epoch, indices = step_example_indices(state.step, len(train_examples), settings.batch_size, settings.seed)
        step_started = time.perf_counter()
        try:
            result = train_step(model, optimizer, scheduler, [train_examples[i] for i in indices], settings)
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc) or settings.micro_batch_size == 1 or settings.world.lockstep:
                raise  # FSDP/DeepSpeed ranks cannot change their micro-batches alone: they run in lockstep
            halve_micro_batch(optimizer, settings, exc)
            continue  # retry the same step: nothing was applied, and the global batch is unchanged
        window_seconds += time.perf_counter() - step_started
        state.step += 1
        state.trained_tokens += result.trained_tokens
        window_real += result.real_tokens
        window_trained += result.trained_tokens
        record = {"step": state.step, "epoch": round(state.step / per_epoch, 4), "loss": result.loss,
                  "lr": scheduler.get_last_lr()[0], "grad_norm": result.grad_norm,
                  "micro_batch_size": settings.micro_batch_size}
        last = state.step == end
        if state.step % settings.log_every == 0 or last:
            record.update(trained_tokens_per_s=window_trained / window_seconds,
                          tokens_per_s=window_real / window_seconds,
                          trained_tokens=state.trained_tokens, peak_rss_mb=round(peak_rss_mb(), 1))
            window_seconds, window_real, window_trained = 0.0, 0, 0
        eval_due = (state.step % settings.eval_every == 0) if settings.eval_every else (state.step % per_epoch == 0)
        if valid_examples and (eval_due or last):
            record["valid_loss"] = validation_loss(model, valid_examples, settings)
            if state.best_valid_loss is None or record["valid_loss"] < state.best_valid_loss:
                state.best_valid_loss = record["valid_loss"]
        if main and ("tokens_per_s" in record or "valid_loss" in record):
            metrics.write(record)
        if state.step % settings.save_every == 0 or last:  # every rank joins (FSDP gathers shards); main writes
            save_checkpoint(run_dir, model, optimizer, scheduler, state, settings.keep_checkpoints, writer=main)
            settings.world.barrier()
        if on_step:
            on_step(state.step, record)
    return state
