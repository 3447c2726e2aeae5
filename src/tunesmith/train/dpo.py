"""Preference tuning (DPO; IPO with dpo.loss: ipo; SimPO, reference-free, with dpo.loss: simpo; RPO with
dpo.sft_weight) on preferred / non-preferred pairs.

Run as: tunesmith train examples/voice/voice.yaml

Recipe: set up (config → personal-data policy, pairs, model, reference log-probs, optimizer) → fit (the
shared loop with the preference objective) → export (adapter + merged model) → run.json. Everything but
the data and the objective (preference_objective.py) is supervised training's: the same model builder
(so `--from RUN` starts DPO from an earlier run), loop, strategies, checkpoints and export.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace

from rich.console import Console

from tunesmith.config import ConfigError, DataConfig, RunConfig
from tunesmith.data.formats import RowError
from tunesmith.data.preference import load_preferences, render_pair
from tunesmith.models.load import load_tokenizer
from tunesmith.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint
from tunesmith.train.deepspeed import check_deepspeed
from tunesmith.train.distributed import init_world
from tunesmith.train.export import export_model
from tunesmith.train.loop import fit, run_outcome
from tunesmith.train.metrics import METRICS_FILE, logged_so_far
from tunesmith.train.parent import parent_record, stacked_parent_adapter
from tunesmith.train.preference_objective import PreferenceExample, PreferenceObjective
from tunesmith.train.reference import with_reference_logps
from tunesmith.train.run_record import guard_personal_data, utc_now, write_run_record
from tunesmith.train.schedule import build_scheduler
from tunesmith.train.setup import (
    InvalidDataError,
    NoTrainingDataError,
    TrainingData,
    build_model,
    build_optimizer,
    build_strategy,
    count_parameters,
    loop_settings,
    seed_everything,
)
from tunesmith.train.sft import RunResult, prepare_run_dir, print_decisions, training_progress


def train(config: RunConfig, resume: bool = False, console: Console | None = None,
          stop_after: int | None = None, started_by: str | None = None) -> RunResult:
    """Run the recipe. `stop_after` pauses after that step with a checkpoint (resume later); no export then."""
    if config.data.replay is not None:
        raise ConfigError("data.replay mixes earlier supervised rows into each step; a dpo run steps on preference "
                          "pairs only — drop data.replay (dpo.sft_weight keeps the preferred answers' supervised loss)")
    console = console or Console(stderr=True)
    started, started_at = time.perf_counter(), utc_now()
    uses_deepspeed = config.train.distributed == "deepspeed"
    deepspeed_json = check_deepspeed(config.train.deepspeed_config) if uses_deepspeed else None  # fail before loading
    world = init_world(config.train.distributed)
    strategy = build_strategy(world, deepspeed_json)
    if not world.is_main:
        console = Console(stderr=True, quiet=True)
    run_dir = prepare_run_dir(config, resume) if world.is_main else config.out
    data_config, pii = guard_personal_data(config, run_dir, scan=world.is_main)  # data.pii, as for SFT
    world.barrier()

    # --- set up: pairs, model, optimizer, schedule, reference log-probs
    seed_everything(config.train.seed)
    tokenizer = load_tokenizer(config.model.base)
    data = load_preference_data(data_config.data, tokenizer)
    for error in data.skipped:
        console.print(f"[yellow]skipped[/] {error}")
    if data.truncated:
        console.print(f"[yellow]{data.truncated} pair(s) truncated to {config.data.max_length} tokens[/]")
    model = build_model(config).to(world.device)  # this rank's GPU, or the CPU
    reference_from_adapter = config.dpo.reference == "auto" and adapter_is_fresh(model)
    model = strategy.shard(model)  # FSDP shards it
    trainable, total = count_parameters(model)
    objective = preference_objective(config)
    settings = replace(loop_settings(config, len(data.train), tokenizer.pad_token_id, strategy), objective=objective)
    optimizer = build_optimizer(model, config)  # after shard: it must hold the shards
    scheduler = build_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, settings.total_steps)
    model, optimizer = strategy.wrap(model, optimizer, settings)  # DeepSpeed's engine takes over here
    if objective.needs_reference and not reference_from_adapter:  # scored now, before a checkpoint loads: the
        # reference is the starting model
        splits = with_reference_logps(model, {"train": data.train, "valid": data.valid}, settings, run_dir,
                                      starting_model(config))
        data = replace(data, train=splits["train"], valid=splits["valid"])
    state, resumed_from = TrainState(step=0, trained_tokens=0), None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, strategy)
        resumed_from = state.step
        console.print(f"resuming from {checkpoint} (step {state.step}/{settings.total_steps})")
    console.print(
        f"dpo ({config.dpo.loss}, beta {config.dpo.beta}, sft_weight {config.dpo.sft_weight}, reference "
        f"{reference_kind(objective, reference_from_adapter)}) on {config.model.base}: "
        f"{trainable:,} of {total:,} parameters trained, {len(data.train)} train / {len(data.valid)} valid pairs, "
        f"{settings.total_steps} steps, bf16={'on' if settings.bf16 else 'off'}"
        + (f", {world.size} processes ({world.strategy})" if world.size > 1 else "")
    )

    # --- fit
    last = logged_so_far(run_dir / METRICS_FILE, state.step)  # a resumed run's steps before this one
    with training_progress(console, disable=not world.is_main) as progress:
        task = progress.add_task("training", total=settings.total_steps, completed=state.step, loss="")

        def on_step(step: int, record: dict) -> None:
            last.update(record)
            print_decisions(console, record)
            progress.update(task, completed=step, total=settings.total_steps,
                            loss=f"loss {last['loss']:.3f} acc {last['rewards/accuracy']:.2f}")

        state = fit(model, optimizer, scheduler, data.train, data.valid, settings, run_dir, state, on_step, stop_after)
    outcome = run_outcome(state, settings)
    finished = outcome["finished"]

    # --- export (one writer: rank 0; FSDP shards are gathered to it first)
    if finished:
        exported = strategy.plain_model(model, lambda: build_model(config))
        if world.is_main:
            export_model(exported, tokenizer, run_dir, stack_on=stacked_parent_adapter(config))
    world.barrier()
    result = RunResult(run_dir=run_dir, steps=state.step, final_loss=last.get("loss"),
                       final_valid_loss=last.get("valid_loss"), trained_tokens=state.trained_tokens,
                       seconds=time.perf_counter() - started, resumed_from=resumed_from, **outcome)
    if world.is_main:
        write_run_record(run_dir, config, {**asdict(result), "trainable_parameters": trainable},
                         started_at=started_at, world_size=world.size, pii=pii, started_by=started_by,
                         parent=parent_record(config), extra={"dpo": config.dpo.model_dump(mode="json"),
                                "final_valid_reward_accuracy": last.get("valid_rewards/accuracy")})
    return result


def load_preference_data(config: DataConfig, tokenizer) -> TrainingData:
    """Validate and render train (and valid) pairs; refuse invalid rows unless skip_invalid, as for SFT data.

    A pair whose prompt fills data.max_length has no answer token left to train on one side: it is skipped
    and reported like an invalid row.
    """
    if config.train is None:
        raise NoTrainingDataError("no training data: pass --data FILE or set data.train in the config")
    splits, skipped, truncated = {}, [], 0
    for name, path in (("train", config.train), ("valid", config.valid)):
        if path is None:
            splits[name] = []
            continue
        loaded = load_preferences(path)
        if loaded.errors and not config.skip_invalid:
            raise InvalidDataError(loaded.errors)
        skipped += loaded.errors
        splits[name] = []
        for pair in loaded.pairs:
            rendered = render_pair(tokenizer, pair, config.max_length)
            truncated += rendered.chosen.truncated or rendered.rejected.truncated
            if rendered.chosen.num_trained and rendered.rejected.num_trained:
                splits[name].append(PreferenceExample(rendered.chosen, rendered.rejected))
            else:
                skipped.append(RowError(str(path), pair.line, "", f"the prompt fills data.max_length ({config.max_length} "
                                        "tokens): no answer token is left to train", "raise data.max_length or shorten the prompt"))
    if not splits["train"]:
        raise NoTrainingDataError(f"{config.train}: no valid preference pairs to train on")
    return TrainingData(train=splits["train"], valid=splits["valid"], skipped=skipped, truncated=truncated)


def reference_kind(objective: PreferenceObjective, from_adapter: bool) -> str:
    if not objective.needs_reference:
        return "none"
    return "adapters disabled" if from_adapter else "precomputed"


def preference_objective(config: RunConfig) -> PreferenceObjective:
    return PreferenceObjective(config.dpo.beta, config.dpo.loss, config.dpo.sft_weight, config.dpo.simpo_gamma)


def adapter_is_fresh(model) -> bool:
    """A LoRA model whose adapters are still zero (every lora_B): disabling them gives the model as it starts."""
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    return bool(lora_b) and all(not p.detach().any() for p in lora_b)


def starting_model(config: RunConfig) -> str:
    """What the run starts from, for the stored reference's key: base, parent, method and weights."""
    return json.dumps({"model": config.model.model_dump(mode="json"), "method": config.train.method,
                       "weights": config.train.weights, "lora": config.lora.model_dump(mode="json")}, sort_keys=True)
