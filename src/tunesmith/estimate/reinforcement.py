"""The estimate of a reinforcement (GRPO) run: timed, not modelled, because a step is mostly sampling.

Run as: tunesmith estimate examples/reinforce/reinforce.yaml --probe

A step samples reinforcement.group_size answers to each of its prompts through the serving engine, grades them and
trains on them; how long the answers run is the model's choice, and decoding on a CPU is bound by memory traffic,
not by FLOPs. So the estimate trains a few real steps of the run's own order on this machine (the weights are
discarded) and times one validation pass (valid_samples prompts answered greedily), then scales them to the run's
steps and validations. Answers change length as the model learns: the figure is the run at the pace of its start.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from tunesmith.config import ConfigError, RunConfig
from tunesmith.train.loop import peak_rss_mb, train_step, validation_metrics
from tunesmith.train.schedule import build_scheduler, step_example_indices


@dataclass
class ReinforcementProbe:
    steps: int  # timed steps (after the warm-up)
    warmup_steps: int
    seconds: float  # wall time of the timed steps
    real_tokens: int  # prompt + answer tokens of the timed steps' forwards with gradients
    answers: int  # answers sampled in the timed steps
    validation_seconds: float  # one validation pass (0 without validation prompts)
    peak_rss_bytes: float
    model_load_seconds: float

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds


def refuse_unprobed(probe: bool) -> None:
    """Only a probe times a reinforcement run (estimate_config refuses a probe of another machine's hardware)."""
    if not probe:
        raise ConfigError("a reinforcement run is timed, not modelled: its steps are mostly sampling, and how long the "
                          "answers run is the model's to choose — run `tunesmith estimate CONFIG --probe` on the "
                          "machine that will train (--hardware cpu)")


def probe_reinforcement(config: RunConfig, train: list, valid: list, tokenizer, grader, steps: int,
                        warmup: int) -> ReinforcementProbe:
    """Train `warmup` steps, then time `steps` steps of the run's own order and one validation pass."""
    from tunesmith.train.frozen_weights import frozen_weights_in_bf16
    from tunesmith.train.reinforce import reward_objective
    from tunesmith.train.setup import build_model, build_optimizer, loop_settings, seed_everything

    seed_everything(config.train.seed)
    started = time.perf_counter()
    model = build_model(config)
    model_load_seconds = time.perf_counter() - started
    settings = replace(loop_settings(config, len(train), tokenizer.pad_token_id),
                       objective=reward_objective(config, grader, tokenizer))
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, settings.total_steps)
    model.train()
    order = range(max(settings.total_steps, warmup + steps))

    def examples_of(step: int) -> list:
        return [train[i] for i in step_example_indices(step, len(train), settings.batch_size, settings.seed)[1]]

    with frozen_weights_in_bf16(model, settings.bf16 and config.train.uses_lora):
        for step in order[:warmup]:
            train_step(model, optimizer, scheduler, examples_of(step), settings)
        seconds, real, answers = 0.0, 0, 0
        timed = order[warmup: warmup + steps] or order[:1]
        for step in timed:
            examples = examples_of(step)
            begun = time.perf_counter()
            result = train_step(model, optimizer, scheduler, examples, settings)
            seconds += time.perf_counter() - begun
            real += result.real_tokens
            answers += len(examples) * config.reinforcement.group_size
        validation_seconds = 0.0
        if valid:
            begun = time.perf_counter()
            validation_metrics(model, valid, settings)
            validation_seconds = time.perf_counter() - begun
    return ReinforcementProbe(steps=len(timed), warmup_steps=warmup, seconds=seconds, real_tokens=real,
                              answers=answers, validation_seconds=validation_seconds,
                              peak_rss_bytes=peak_rss_mb() * 2**20, model_load_seconds=model_load_seconds)
