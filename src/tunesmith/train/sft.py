"""Supervised finetuning (chat, instruction) and continued pretraining (raw text), LoRA or full.

Run as: tunesmith train --data examples/elements/train.jsonl --valid examples/elements/valid.jsonl --out runs/elements

Recipe: set up (config → personal-data policy, data, model, optimizer) → fit (the shared loop) → export
(adapter + merged model) → run.json and the model card (run_record.py).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tunesmith.config import RunConfig, save_config
from tunesmith.models.load import load_tokenizer
from tunesmith.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint
from tunesmith.train import compiled_layers
from tunesmith.train.deepspeed import check_deepspeed
from tunesmith.train.distributed import init_world
from tunesmith.train.export import export_model
from tunesmith.train.frozen_weights import frozen_weights_in_bf16
from tunesmith.train.loop import fit, run_outcome
from tunesmith.train.metrics import METRICS_FILE, logged_so_far
from tunesmith.train.run_record import guard_personal_data, utc_now, write_run_record
from tunesmith.train.parent import parent_record, stacked_parent_adapter
from tunesmith.train.replay import ReplayPool, load_replay
from tunesmith.train.schedule import build_scheduler
from tunesmith.train.time_budget import budget_message
from tunesmith.train.setup import (
    build_model,
    build_optimizer,
    build_strategy,
    count_parameters,
    load_training_data,
    loop_settings,
    seed_everything,
)


class RunDirectoryInUse(RuntimeError):
    """The output directory already holds a run; resume it or choose another."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_loss: float | None
    final_valid_loss: float | None
    trained_tokens: int
    seconds: float
    resumed_from: int | None
    finished: bool = True
    stopped_by: str = "steps"  # steps (epochs / max_steps), time_budget, early_stopping, or paused (stop_after)
    time_budget: dict | None = None  # train.time_budget's decision: measured s/step, steps chosen
    early_stopping: dict | None = None  # train.early_stopping_patience: the best step (exported), its loss, the stop


def prepare_run_dir(config: RunConfig, resume: bool) -> Path:
    run_dir = config.out
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise RunDirectoryInUse(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    return run_dir


def train(config: RunConfig, resume: bool = False, console: Console | None = None,
          stop_after: int | None = None, started_by: str | None = None) -> RunResult:
    """Run the recipe. `stop_after` pauses after that step with a checkpoint (resume later); no export then.

    `started_by` goes into run.json: the API key id when the server's worker trains, else the OS user.
    """
    console = console or Console(stderr=True)
    started, started_at = time.perf_counter(), utc_now()
    uses_deepspeed = config.train.distributed == "deepspeed"
    deepspeed_json = check_deepspeed(config.train.deepspeed_config) if uses_deepspeed else None  # fail before loading
    world = init_world(config.train.distributed)
    compiles = config.train.compile and compiled_layers.applies(world.size)
    if compiles:
        compiled_layers.check_compiler(world.device)  # before anything loads
    strategy = build_strategy(world, deepspeed_json)
    if not world.is_main:
        console = Console(stderr=True, quiet=True)
    run_dir = prepare_run_dir(config, resume) if world.is_main else config.out
    # data.pii: refuse, or redact into RUN_DIR/redacted/ (written by the main process before any rank reads)
    data_config, pii = guard_personal_data(config, run_dir, scan=world.is_main)
    world.barrier()

    # --- set up: data, model, optimizer, schedule
    seed_everything(config.train.seed)
    tokenizer = load_tokenizer(config.model.base)
    data = load_training_data(data_config.data, tokenizer)
    for error in data.skipped:
        console.print(f"[yellow]skipped[/] {error}")
    if data.truncated:
        console.print(f"[yellow]{data.truncated} example(s) truncated to {config.data.max_length} tokens[/]")
    model = strategy.shard(build_model(config).to(world.device))  # this rank's GPU, or the CPU; FSDP shards it
    trainable, total = count_parameters(model)
    replay = load_replay(data_config, tokenizer)  # earlier data, general text (as data.pii left it) in each step
    settings = loop_settings(config, len(data.train), tokenizer.pad_token_id, strategy, replay)
    optimizer = build_optimizer(model, config)  # after shard: it must hold the shards
    scheduler = build_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, settings.total_steps)
    # DeepSpeed's engine takes over model and optimizer here; the schedule keeps driving the optimizer's lr
    model, optimizer = strategy.wrap(model, optimizer, settings)
    if compiles:
        compiled_layers.compile_decoder_layers(model)  # compiled at the first step (train/compiled_layers.py)
        settings.min_rows = compiled_layers.row_floor(data.train, settings)  # a one-row batch: padded, not recompiled
    state, resumed_from = TrainState(step=0, trained_tokens=0), None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, strategy)
        resumed_from = state.step
        decided = state.time_budget["total_steps"] if state.time_budget else settings.total_steps
        console.print(f"resuming from {checkpoint} (step {state.step}/{decided})")
    console.print(
        f"{config.train.method} on {config.model.base}: {trainable:,} of {total:,} parameters trained, "
        f"{len(data.train)} train / {len(data.valid)} valid examples, {settings.total_steps} steps, "
        f"bf16={'on' if settings.bf16 else 'off'}"
        + (", compiled layers (the first step compiles them)" if compiles else "")
        + (f", {world.size} processes ({world.strategy})" if world.size > 1 else "")
    )

    if config.train.compile and not compiles:
        console.print(f"[yellow]{compiled_layers.NOT_APPLIED.format(processes=world.size)}[/]")

    # --- fit
    last = logged_so_far(run_dir / METRICS_FILE, state.step)  # a resumed run's steps before this one
    with training_progress(console, disable=not world.is_main) as progress:
        task = progress.add_task("training", total=settings.total_steps, completed=state.step, loss="")

        def on_step(step: int, record: dict) -> None:
            last.update(record)
            print_decisions(console, record)
            progress.update(task, completed=step, total=settings.total_steps, loss=f"loss {last['loss']:.3f}")

        # frozen base weights cast to bf16 once, not in every forward (train/frozen_weights.py); fp32 again for export
        with frozen_weights_in_bf16(model, settings.bf16 and config.train.uses_lora and world.size == 1):
            state = fit(model, optimizer, scheduler, data.train, data.valid, settings, run_dir, state, on_step,
                        stop_after)
    outcome = run_outcome(state, settings)
    finished = outcome["finished"]

    # --- export (one writer: rank 0; FSDP shards are gathered to it first)
    if finished:
        exported = strategy.plain_model(model, lambda: build_model(config))
        if world.is_main:
            export_model(exported, tokenizer, run_dir, stack_on=stacked_parent_adapter(config))
    world.barrier()
    result = RunResult(
        run_dir=run_dir,
        steps=state.step,
        final_loss=last.get("loss"),
        final_valid_loss=last.get("valid_loss"),
        trained_tokens=state.trained_tokens,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        **outcome,
    )
    if world.is_main:
        write_run_record(run_dir, config, {**asdict(result), "trainable_parameters": trainable},
                         started_at=started_at, world_size=world.size, pii=pii, started_by=started_by,
                         parent=parent_record(config), extra={"replay": replay.record() if replay is not None else None})
    return result


def print_decisions(console: Console, record: dict) -> None:
    """What a step record of fit says the run decided: its time budget's total."""
    if "time_budget" in record:
        console.print(budget_message(record["time_budget"]))


def training_progress(console: Console, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )

