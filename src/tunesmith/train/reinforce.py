"""Reinforcement finetuning (GRPO) on prompts and a grader: OpenAI's `reinforcement` method, TRL's GRPOTrainer.

Run as: tunesmith train examples/reinforce/reinforce.yaml

Recipe: set up (config → grader, personal-data policy, prompts, model, optimizer) → fit (the shared loop with the
group-reward objective: each step samples reinforcement.group_size answers to each of its prompts from the model as it
is, grades them and trains towards the better ones; reward_objective.py) → export (adapter + merged model) → run.json.
The model builder (so `--from RUN` starts from an earlier run), loop, checkpoints (with the sampler's random state:
a resumed run samples what the uninterrupted one did) and export are supervised training's.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace

from rich.console import Console

from tunesmith.config import ConfigError, DataConfig, RunConfig
from tunesmith.data.formats import RowError
from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.load import inference_dtype, load_tokenizer
from tunesmith.train.base_anchor import parent_adapter_weights
from tunesmith.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint
from tunesmith.train.distributed import init_world
from tunesmith.train.export import export_model
from tunesmith.train.frozen_weights import frozen_weights_in_bf16
from tunesmith.train.graders import GraderError, graded_prompt_rows, parse_grader
from tunesmith.train.local_judge import LocalJudge
from tunesmith.train.loop import fit, run_outcome
from tunesmith.train.metrics import METRICS_FILE, logged_so_far
from tunesmith.train.model_graders import uses_models, with_judge
from tunesmith.train.parent import parent_record, stacked_parent_adapter
from tunesmith.train.reward_objective import GroupRewardObjective, PromptExample
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
    grader = checked_grader(config)  # before anything loads: a bad grader costs nothing
    console = console or Console(stderr=True)
    started, started_at = time.perf_counter(), utc_now()
    world = init_world(config.train.distributed)
    strategy = build_strategy(world, None)
    run_dir = prepare_run_dir(config, resume)
    data_config, pii = guard_personal_data(config, run_dir)  # data.pii, as for SFT

    # --- set up: prompts, model, objective, optimizer, schedule
    seed_everything(config.train.seed)
    tokenizer = load_tokenizer(config.model.base)
    data = load_prompt_data(data_config.data, tokenizer, grader)
    data = replace(data, valid=data.valid[:config.reinforcement.valid_samples])  # each validation answers these
    for error in data.skipped:
        console.print(f"[yellow]skipped[/] {error}")
    model = build_model(config).to(world.device)
    trainable, total = count_parameters(model)
    r = config.reinforcement
    objective = reward_objective(config, grader, tokenizer)
    settings = replace(loop_settings(config, len(data.train), tokenizer.pad_token_id, strategy), objective=objective)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, settings.total_steps)
    state, resumed_from = TrainState(step=0, trained_tokens=0), None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, strategy)
        resumed_from = state.step
        console.print(f"resuming from {checkpoint} (step {state.step}/{settings.total_steps})")
    console.print(
        f"reinforcement (GRPO, {r.group_size} answers a prompt, grader {grader.type} {grader.name!r}, beta {r.beta}) on "
        f"{config.model.base}: {trainable:,} of {total:,} parameters trained, {len(data.train)} train / "
        f"{len(data.valid)} valid prompts, {settings.total_steps} steps, bf16={'on' if settings.bf16 else 'off'}"
    )

    # --- fit
    last = logged_so_far(run_dir / METRICS_FILE, state.step)  # a resumed run's steps before this one
    with training_progress(console) as progress:
        task = progress.add_task("training", total=settings.total_steps, completed=state.step, loss="")

        def on_step(step: int, record: dict) -> None:
            last.update(record)
            print_decisions(console, record)
            progress.update(task, completed=step, total=settings.total_steps, loss=f"reward {last['reward']:.3f}")

        # frozen base weights cast to bf16 once (train/frozen_weights.py): the step's forward and its sampling both
        # run on them; fp32 again for export
        with frozen_weights_in_bf16(model, settings.bf16 and config.train.uses_lora and world.size == 1):
            state = fit(model, optimizer, scheduler, data.train, data.valid, settings, run_dir, state, on_step,
                        stop_after)
    outcome = run_outcome(state, settings)

    # --- export
    if outcome["finished"]:
        export_model(strategy.plain_model(model, lambda: build_model(config)), tokenizer, run_dir,
                     stack_on=stacked_parent_adapter(config))
    result = RunResult(run_dir=run_dir, steps=state.step, final_loss=last.get("loss"),
                       final_valid_loss=last.get("valid_loss"), trained_tokens=state.trained_tokens,
                       seconds=time.perf_counter() - started, resumed_from=resumed_from, **outcome)
    write_run_record(run_dir, config, {**asdict(result), "trainable_parameters": trainable},
                     started_at=started_at, world_size=world.size, pii=pii, started_by=started_by,
                     parent=parent_record(config),
                     extra={"reinforcement": config.reinforcement.model_dump(mode="json"),
                            "final_reward": last.get("reward"), "final_valid_reward": last.get("valid_reward")})
    return result


def checked_grader(config: RunConfig):
    """The run's grader, parsed; a missing or invalid one, or a run the recipe cannot do, is a ConfigError."""
    if config.reinforcement.grader is None:
        raise ConfigError("train.method reinforcement needs reinforcement.grader: e.g. {type: string_check, name: answer, "
                          "input: '{{ sample.output_text }}', reference: '{{ item.answer }}', operation: ilike}")
    if config.data.replay is not None:
        raise ConfigError("data.replay mixes supervised rows into each step; a reinforcement run steps on its prompts "
                          "only — drop data.replay (reinforcement.beta keeps the model near its base)")
    if config.train.distributed in ("fsdp", "deepspeed"):
        raise ConfigError(f"train.distributed {config.train.distributed}: reinforcement samples its answers from the "
                          "whole model in each process — use ddp (or one process)")
    if config.reinforcement.beta and not config.train.uses_lora:
        raise ConfigError("reinforcement.beta needs LoRA weights (the base model is the adapters switched off): set "
                          "train.weights: lora, or beta: 0")
    try:
        grader = parse_grader(config.reinforcement.grader, where="reinforcement.grader")
    except GraderError as error:
        raise ConfigError(str(error)) from None
    if not uses_models(grader):
        return grader
    return with_judge(grader, LocalJudge(config.reinforcement.judges, inference_dtype(config.train.bf16)))


def reward_objective(config: RunConfig, grader, tokenizer) -> GroupRewardObjective:
    """The loop's objective for this run: its grader and reinforcement settings, the KL's reference."""
    r = config.reinforcement
    return GroupRewardObjective(grader, r.group_size, r.max_new_tokens, r.temperature, r.top_p, r.beta,
                                r.scale_rewards, frozenset(stop_token_ids(tokenizer)), r.mask_truncated_answers,
                                tokenizer, reference_weights=kl_reference_weights(config))


def kl_reference_weights(config: RunConfig) -> dict | None:
    """What reinforcement.beta's KL holds the model to: the run's starting point. A run that continues its parent's
    adapter starts from the parent's adapter weights (swapped in for the reference forward); any other LoRA run
    starts from its base with the adapters off (None)."""
    parent = config.model.parent
    if config.reinforcement.beta and parent is not None and parent.adapter == "continue" and config.train.uses_lora:
        return parent_adapter_weights(config)
    return None


def load_prompt_data(config: DataConfig, tokenizer, grader) -> TrainingData:
    """Validate and render train (and valid) prompts; refuse invalid rows unless skip_invalid, as for SFT data. A row
    lacking a field the grader reads is an invalid row; a prompt that leaves no room under data.max_length is skipped."""
    if config.train is None:
        raise NoTrainingDataError("no training data: pass --data FILE or set data.train in the config")
    splits, skipped = {}, []
    for name, path in (("train", config.train), ("valid", config.valid)):
        splits[name] = []
        if path is None:
            continue
        rows, errors = graded_prompt_rows(path, grader)
        if errors and not config.skip_invalid:
            raise InvalidDataError(errors)
        skipped += errors
        for row, ids in zip(rows, render_prompts(tokenizer, [row.messages for row in rows])):
            if len(ids) >= config.max_length:
                skipped.append(RowError(str(path), row.line, "messages", f"the prompt is {len(ids)} tokens, at or over "
                                        f"data.max_length ({config.max_length})", "raise data.max_length or shorten it"))
            else:
                splits[name].append(PromptExample(tuple(ids), row.item, row.line))
    if not splits["train"]:
        raise NoTrainingDataError(f"{config.train}: no valid prompts to train on")
    return TrainingData(train=splits["train"], valid=splits["valid"], skipped=skipped)
