"""The estimate of a reinforcement (GRPO) run: timed, not modelled, because a step is mostly sampling.

Run as: tunesmith estimate examples/reinforce/reinforce.yaml --probe

A step samples reinforcement.group_size answers to each of its prompts through the serving engine, grades them and
trains on them; how long the answers run is the model's choice, and decoding on a CPU is bound by memory traffic,
not by FLOPs. So the estimate trains a few real steps of the run's own order on this machine (the weights are
discarded) and times one validation pass (valid_samples prompts answered greedily), then scales them to the run's
steps and validations. Answers change length as the model learns: the figure is the run at the pace of its start.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from tunesmith.config import ConfigError, RunConfig
from tunesmith.estimate.probe import timed_steps
from tunesmith.train.loop import peak_rss_mb, validation_metrics


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
    from tunesmith.train.reinforce import reward_objective
    from tunesmith.train.setup import loop_settings

    settings = replace(loop_settings(config, len(train), tokenizer.pad_token_id),
                       objective=reward_objective(config, grader, tokenizer))
    order = range(max(settings.total_steps, warmup + steps))
    measured = order[warmup: warmup + steps] or order[:1]
    timed = timed_steps(config, train, settings, order[:warmup], measured,
                        after=lambda model: validation_metrics(model, valid, settings) if valid else None)
    return ReinforcementProbe(steps=len(measured), warmup_steps=warmup, seconds=timed.seconds,
                              real_tokens=timed.real_tokens, answers=timed.examples * config.reinforcement.group_size,
                              validation_seconds=timed.after_seconds if valid else 0.0,
                              peak_rss_bytes=peak_rss_mb() * 2**20, model_load_seconds=timed.model_load_seconds)
