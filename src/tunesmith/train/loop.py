"""The training loop shared by every method: accumulate, normalise, clip, step, log, evaluate, checkpoint.

Loss normalisation lives here once: each optimizer step's loss is the sum of token losses over all its
micro-batches divided by the step's total number of trained tokens (not a mean of micro-batch means),
so batch 8 × accumulation 1 and batch 1 × accumulation 8 give the same gradient. A method other than
supervised finetuning counts other units (DPO: pairs): `settings.objective` (objective.py) says what one
example counts, collates batches and sums their loss; the normalisation stays here.

How the ranks share the model (one process, DDP, FSDP, DeepSpeed) is `settings.strategy`'s business
(strategy.py): the step below is the same recipe under each, and never asks which strategy it runs.

train.time_budget may end a run before epochs / max_steps would: it shortens the run once, after measuring
its pace (time_budget.py). The decision lives in the TrainState, so a resumed run does not decide again.
"""
from __future__ import annotations

import contextlib
import logging
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from tunesmith.train.checkpoint import TrainState, checkpoint_name, save_checkpoint
from tunesmith.train.data_parallel import DataParallelStrategy
from tunesmith.train.metrics import METRICS_FILE, MetricsLog
from tunesmith.train.objective import Objective, TokenObjective
from tunesmith.train.schedule import fix_total_steps, micro_batches, step_example_indices, steps_per_epoch
from tunesmith.train.replay import ReplayPool
from tunesmith.train.strategy import Strategy, TrainingDiverged
from tunesmith.train.time_budget import TimeBudget
from tunesmith.train.trackers import open_trackers


log = logging.getLogger("tunesmith.train")


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
    strategy: Strategy = DataParallelStrategy()  # one process unless the recipe builds another (setup.build_strategy)
    objective: Objective = TokenObjective()  # supervised next-token loss unless the recipe trains another method
    replay: ReplayPool | None = None  # earlier data / general text mixed into each step (data.replay)
    report_to: tuple[str, ...] = ()  # trackers that get each metrics.jsonl record too (train.report_to)
    time_budget: float | None = None  # minutes the loop's steps must fit (train.time_budget); None: no limit
    share_prefix: bool = False  # packed examples share their common untrained prefix (data.share_prefix)
    min_rows: int = 1  # a batch of fewer rows gets rows of padding (compiled layers: compiled_layers.row_floor)
    early_stopping_patience: int | None = None  # validations without a new best: the run stops (note_validation)

    @property
    def new_per_step(self) -> int:
        """Examples of the run's own training data per step: the batch less its replayed share."""
        return self.batch_size - (self.replay.per_step if self.replay is not None else 0)


@dataclass
class StepResult:
    loss: float  # mean loss per unit over the step (per trained token for SFT, per pair for DPO)
    grad_norm: float
    trained_tokens: int
    real_tokens: int
    metrics: dict[str, float] = field(default_factory=dict)  # the objective's metrics, means over the step's units


def autocast(enabled: bool, device: str = "cpu"):
    """bf16 autocast over fp32 weights on the device's type (cpu: AMX/AVX512-BF16; cuda)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def local_batches(examples: list, strategy: Strategy, size: int) -> list[tuple[list, float]]:
    """This rank's share of `examples` in batches of `size`, each with its loss weight (1, or 0 for a filler).

    Under a lockstep strategy (FSDP, DeepSpeed) ranks run collectives in every forward and backward, so each
    must run the same number of batches: a rank whose share is shorter runs 0-weighted fillers (no gradient;
    it joins the collectives).
    """
    world = strategy.world
    local = world.shard(examples)
    batches = [([local[i] for i in chunk], 1.0) for chunk in micro_batches(list(range(len(local))), size)]
    if strategy.lockstep:
        most = math.ceil(math.ceil(len(examples) / world.size) / size)  # rank 0 holds the longest share
        batches += [([examples[0]], 0.0)] * (most - len(batches))
    return batches


def train_step(model, optimizer, scheduler, examples: list, settings: LoopSettings) -> StepResult:
    """One optimizer step over `examples`, split into micro-batches whose losses share one denominator.

    Under data parallelism each rank takes its shard of `examples`; the denominator stays global.
    """
    strategy, world, objective = settings.strategy, settings.strategy.world, settings.objective
    units = sum(objective.denominator(e) for e in examples)  # global: every rank sees the whole step's examples
    if units == 0:
        raise NoTrainedTokensError("a training step has no trained tokens: every example in it masks all its tokens")
    loss_total, real, sums = 0.0, 0, dict.fromkeys(objective.metric_names, 0.0)
    batches = local_batches(examples, strategy, settings.micro_batch_size)
    for index, (chunk, weight) in enumerate(batches):
        batch = objective.collate(chunk, settings).to(world.device)
        with autocast(settings.bf16, world.device):
            loss_sum, metric_sums = strategy.loss_sum(model, objective, batch)
            loss_sum = loss_sum * weight
        strategy.backward(model, loss_sum / units, closes_step=index == len(batches) - 1)
        loss_total += loss_sum.item()
        real += batch.num_real_tokens * int(weight)
        for name in sums:
            sums[name] += float(metric_sums[name]) * weight
    strategy.sum_gradients(model)
    loss_total, real = world.sum(loss_total), int(world.sum(real))
    if not math.isfinite(loss_total):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"loss became {loss_total}")
    grad_norm = strategy.clip_and_step(model, optimizer, settings.max_grad_norm)  # raises on a NaN/inf norm
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    trained = sum(objective.trained_tokens(e) for e in examples)
    metrics = {name: world.sum(total) / units for name, total in sums.items()}
    return StepResult(loss_total / units, grad_norm, trained, real, metrics)


VALID_MICRO_BATCHES = 4  # examples in a validation pass, in training micro-batches (validation_metrics)


@torch.no_grad()
@torch.compiler.set_stance("force_eager")
def validation_metrics(model, examples: list, settings: LoopSettings, batch_size: int | None = None) -> dict[str, float]:
    """{"valid_loss": mean loss per unit over `examples`, "valid_<metric>": the objective's metrics, same means}.

    Eager even where train.compile compiled the layers: a forward without gradients with the adapters on would be
    a graph of its own, and its compiling outweighs what it saves (the demo's one validation, 300 rows, on an
    empty compile cache: 14.0 s compiled, 10.5-10.9 s eager).

    `batch_size` None: VALID_MICRO_BATCHES training micro-batches a pass, at least 16 examples. A forward without
    gradients keeps no activations for a backward, and at small batches a pass is mostly fixed cost (the demo's 300
    rows, micro-batch 16, 2026-12-06: 8.0-8.1 s at 16 a pass, 6.6 at 32, 5.4-5.7 at 64, 5.5-5.6 at 96-160)."""
    batch_size = batch_size or max(16, VALID_MICRO_BATCHES * settings.micro_batch_size)
    was_training = model.training
    model.eval()
    strategy, world, objective = settings.strategy, settings.strategy.world, settings.objective
    total, units, sums = 0.0, 0, dict.fromkeys(objective.metric_names, 0.0)
    for chunk, weight in local_batches(examples, strategy, batch_size):
        batch = objective.collate(chunk, settings).to(world.device)
        with autocast(settings.bf16, world.device):
            loss_sum, metric_sums = strategy.loss_sum(model, objective, batch)
        total += loss_sum.item() * weight
        units += sum(objective.denominator(e) for e in chunk) * int(weight)
        for name in sums:
            sums[name] += float(metric_sums[name]) * weight
    model.train(was_training)
    units = max(world.sum(units), 1)
    return {"valid_loss": world.sum(total) / units, **{f"valid_{name}": world.sum(v) / units for name, v in sums.items()}}


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
    train_examples: list,
    valid_examples: list,
    settings: LoopSettings,
    run_dir: Path,
    state: TrainState,
    on_step: Callable[[int, dict], None] | None = None,
    stop_after: int | None = None,
) -> TrainState:
    """Train from `state.step` to `settings.total_steps` (or to `stop_after`, checkpointed); returns the state.
    A time budget's decision sets `settings.total_steps` (the
    recipe's progress and `run_outcome` read it); `on_step` gets it once as record["time_budget"]."""
    strategy, world = settings.strategy, settings.strategy.world
    budget = start_time_budget(state, settings, scheduler)
    metrics = MetricsLog(run_dir / METRICS_FILE, state.step, open_trackers(settings.report_to, run_dir, state.step)) \
        if world.is_main else None
    per_epoch = steps_per_epoch(len(train_examples), settings.new_per_step)
    model.train()
    window_seconds, window_real, window_trained = 0.0, 0, 0  # training time only: evals and saves excluded
    patience = settings.early_stopping_patience
    while state.step < run_end(settings, stop_after) and not state.stopped_early:
        examples = step_examples(state.step, train_examples, settings)
        step_started = time.perf_counter()
        try:
            result = train_step(model, optimizer, scheduler, examples, settings)
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc) or settings.micro_batch_size == 1 or strategy.lockstep:
                raise  # FSDP/DeepSpeed ranks cannot change their micro-batches alone: they run in lockstep
            halve_micro_batch(optimizer, settings, exc)
            continue  # retry the same step: nothing was applied, and the global batch is unchanged
        window_seconds += time.perf_counter() - step_started
        state.step += 1
        state.trained_tokens += result.trained_tokens
        window_real += result.real_tokens
        window_trained += result.trained_tokens
        decision = budget.observe(state.step, settings.total_steps) if budget is not None else None
        if decision is not None:  # before the lr is read below: the next step already follows the new schedule
            fix_budget_total(state, settings, scheduler, decision)
            budget = None
        record = {"step": state.step, "epoch": round(state.step / per_epoch, 4), "loss": result.loss,
                  **result.metrics, "lr": scheduler.get_last_lr()[0], "grad_norm": result.grad_norm,
                  "micro_batch_size": settings.micro_batch_size}
        last = state.step == run_end(settings, stop_after)
        if state.step % settings.log_every == 0 or last:
            # real_tokens: every rank's forward tokens since the last record, summed; N processes on disjoint shares
            # of each step run exactly the tokens one process runs (every rank on the whole step would run N times)
            record.update(trained_tokens_per_s=window_trained / window_seconds, real_tokens=window_real,
                          tokens_per_s=window_real / window_seconds,
                          trained_tokens=state.trained_tokens, peak_rss_mb=round(peak_rss_mb(), 1))
            window_seconds, window_real, window_trained = 0.0, 0, 0
        eval_due = (state.step % settings.eval_every == 0) if settings.eval_every else (state.step % per_epoch == 0)
        improved = False
        if valid_examples and (eval_due or last):
            record.update(validation_metrics(model, valid_examples, settings))
            improved = note_validation(state, record["valid_loss"], patience)
            if state.stopped_early:
                record["early_stopping"] = early_stopping_record(state, patience)
        if metrics is not None and ("tokens_per_s" in record or "valid_loss" in record):
            metrics.write(record)
        if state.step % settings.save_every == 0 or last or state.stopped_early or (improved and patience is not None):
            save_checkpoint(run_dir, model, optimizer, scheduler, state, settings.keep_checkpoints, strategy,
                            protect=state.best_step if patience is not None else None)
            world.barrier()  # every rank joins (FSDP gathers shards); main writes
        if on_step:  # the recipe prints the decision
            on_step(state.step, {**record, "time_budget": decision} if decision is not None else record)
    if metrics is not None:
        metrics.close()
    if patience is not None and (state.stopped_early or state.step >= settings.total_steps):
        restore_best(model, optimizer, state, run_dir, strategy)
    return state


def note_validation(state: TrainState, valid_loss: float, patience: int | None) -> bool:
    """Track the best validation loss (and its step); with a patience, count validations since it and stop the run
    once they reach it. True when this one is a new best."""
    improved = state.best_valid_loss is None or valid_loss < state.best_valid_loss
    if improved:
        state.best_valid_loss, state.best_step, state.evals_since_best = valid_loss, state.step, 0
    else:
        state.evals_since_best += 1
    state.stopped_early = patience is not None and state.evals_since_best >= patience
    return improved


def restore_best(model, optimizer, state: TrainState, run_dir: Path, strategy: Strategy) -> None:
    """The finished run's weights become those of its best validation (checkpointed when it was reached and kept
    since), so the recipe exports them; a run whose last validation is its best keeps what it has."""
    if state.best_step is None or state.best_step == state.step:
        return
    strategy.load_state(model, optimizer, run_dir / "checkpoints" / checkpoint_name(state.best_step))
    log.info("early stopping: exporting the weights of step %d (validation loss %.4f)", state.best_step,
             state.best_valid_loss)


def early_stopping_record(state: TrainState, patience: int | None) -> dict | None:
    """What run.json and a metrics line say about early stopping: the best step, its loss, where the run stopped."""
    if patience is None:
        return None
    return {"patience": patience, "best_step": state.best_step, "best_valid_loss": state.best_valid_loss,
            "stopped_at_step": state.step if state.stopped_early else None}


def run_end(settings: LoopSettings, stop_after: int | None) -> int:
    """The step this call of fit ends at (the run's total may change once, when a time budget decides it)."""
    return settings.total_steps if stop_after is None else min(stop_after, settings.total_steps)


def step_examples(step: int, train_examples: list, settings: LoopSettings) -> list:
    """0-based step `step`'s examples: its batch of the run's own data, then its replayed ones (pure: the same for
    a resumed run)."""
    _, indices = step_example_indices(step, len(train_examples), settings.new_per_step, settings.seed)
    examples = [train_examples[i] for i in indices]
    if settings.replay is not None:
        examples += settings.replay.step_examples(step, settings.seed)
    return examples


def start_time_budget(state: TrainState, settings: LoopSettings, scheduler) -> TimeBudget | None:
    """A resumed run's earlier decision applied (total and schedule), or a budget measuring this run's pace;
    None when there is nothing left to decide."""
    if state.time_budget is not None:
        settings.total_steps = state.time_budget["total_steps"]
        fix_total_steps(scheduler, settings.total_steps)  # the checkpoint's schedule holds it already; made sure
        return None
    return TimeBudget(settings.time_budget, settings.strategy.world) if settings.time_budget is not None else None


def fix_budget_total(state: TrainState, settings: LoopSettings, scheduler, decision: dict) -> None:
    """The run's total, fixed once: in the state (checkpoints carry it), the settings and the schedule's end."""
    state.time_budget = decision
    settings.total_steps = decision["total_steps"]
    fix_total_steps(scheduler, settings.total_steps)


def run_outcome(state: TrainState, settings: LoopSettings) -> dict:
    """How fit left the run, for the recipe's RunResult and run.json: finished (export now) or paused (resume
    later), what stopped it (stopped_by: steps, time_budget, early_stopping, or paused), the budget's record and
    early stopping's."""
    if state.stopped_early:
        stopped_by = "early_stopping"
    elif state.step < settings.total_steps:
        stopped_by = "paused"  # stop_after: checkpointed, continue with --resume
    elif state.time_budget is not None and state.time_budget["limited_by"] == "time_budget":
        stopped_by = "time_budget"
    else:
        stopped_by = "steps"
    budget = state.time_budget
    if budget is None and settings.time_budget is not None:
        budget = {"minutes": settings.time_budget, "total_steps": settings.total_steps, "decided_at_step": None,
                  "limited_by": "epochs/max_steps (the run ended, or paused, before its pace was measured)"}
    return {"finished": stopped_by != "paused", "stopped_by": stopped_by, "time_budget": budget,
            "early_stopping": early_stopping_record(state, settings.early_stopping_patience)}
