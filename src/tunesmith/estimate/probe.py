"""Calibrate the estimate on this machine: a few real training steps on the run's own data and config.

Run as: tunesmith estimate examples/elements/demo.yaml --probe
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tunesmith.config import RunConfig
from tunesmith.estimate.cost_model import MicroBatchShape, Method, ModelShape, activation_bytes
from tunesmith.train import compiled_layers
from tunesmith.train.frozen_weights import frozen_weights_in_bf16
from tunesmith.train.loop import LoopSettings, peak_rss_mb, train_step
from tunesmith.train.schedule import build_scheduler, step_example_indices
from tunesmith.train.setup import build_model, build_optimizer, loop_settings, seed_everything


@dataclass
class ProbeResult:
    steps: int  # measured steps (after the warm-up)
    warmup_steps: int
    seconds: float  # wall time of the measured steps
    flops: float  # modelled FLOPs of the measured steps
    real_tokens: int
    peak_rss_bytes: float  # process peak after warm-up and measured steps
    model_load_seconds: float
    compile_seconds: float = 0.0  # train.compile: the warm-up's time beyond its steps' measured pace (compiling)

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds


def largest_step(plan: list[list[MicroBatchShape]], shape: ModelShape, method: Method, bf16: bool) -> int:
    """The step whose micro-batch keeps the most activations: warming up on it makes the peak RSS representative."""
    return max(range(len(plan)), key=lambda s: max(activation_bytes(mb, shape, method, bf16) for mb in plan[s]))


@dataclass
class TimedSteps:
    seconds: float  # wall time of the measured steps
    real_tokens: int
    examples: int  # in the measured steps
    warm_seconds: float
    model_load_seconds: float
    after_seconds: float = 0.0  # `after`'s wall time (a validation pass)


def timed_steps(config: RunConfig, train: Sequence, settings: LoopSettings, warm: Sequence[int],
                measured: Sequence[int], after: Callable[[object], object] | None = None) -> TimedSteps:
    """Build the run's model, optimizer and scheduler as its recipe does, train the `warm` steps, then time the
    `measured` ones (each step's examples as the loop draws them) and `after(model)`, the frozen weights held as the
    run holds them (bf16 copies under LoRA with bf16); the weights are discarded."""
    seed_everything(config.train.seed)
    started = time.perf_counter()
    model = build_model(config)
    model_load_seconds = time.perf_counter() - started
    if config.train.compile:  # as the run will: its warm-up steps compile the layers
        compiled_layers.check_compiler("cpu")
        compiled_layers.compile_decoder_layers(model)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, settings.total_steps)
    model.train()

    def examples_of(step: int) -> list:
        return [train[i] for i in step_example_indices(step, len(train), settings.batch_size, settings.seed)[1]]

    with frozen_weights_in_bf16(model, settings.bf16 and config.train.uses_lora):
        warm_started = time.perf_counter()
        for step in warm:
            train_step(model, optimizer, scheduler, examples_of(step), settings)
        warm_seconds = time.perf_counter() - warm_started
        seconds, real, examples = 0.0, 0, 0
        for step in measured:
            chosen = examples_of(step)
            begun = time.perf_counter()
            result = train_step(model, optimizer, scheduler, chosen, settings)
            seconds += time.perf_counter() - begun
            real, examples = real + result.real_tokens, examples + len(chosen)
        after_seconds = 0.0
        if after is not None:
            begun = time.perf_counter()
            after(model)
            after_seconds = time.perf_counter() - begun
    return TimedSteps(seconds, real, examples, warm_seconds, model_load_seconds, after_seconds)


def run_probe(config: RunConfig, train: Sequence, pad_id: int, plan: list[list[MicroBatchShape]],
              shape: ModelShape, method: Method, flops_of: Callable[[MicroBatchShape], float], steps: int = 3,
              warmup: int = 1) -> ProbeResult:
    """Train `warmup` steps (the largest first), then time `steps` steps of the run's own order; weights are discarded.
    `train`: the loop's examples (supervised examples or preference pairs); `flops_of`: a micro-batch's modelled FLOPs."""
    settings = loop_settings(config, len(train), pad_id)
    if config.train.method == "dpo":
        from tunesmith.train.dpo import preference_objective

        settings = replace(settings, objective=preference_objective(config))
    biggest = largest_step(plan, shape, method, settings.bf16)
    warm = [biggest] + [s for s in range(len(plan)) if s != biggest][: warmup - 1]
    measured = [s for s in range(len(plan)) if s not in warm][:steps] or warm[:1]
    timed = timed_steps(config, train, settings, warm, measured)
    return ProbeResult(
        steps=len(measured),
        warmup_steps=len(warm),
        seconds=timed.seconds,
        flops=sum(flops_of(mb) for step in measured for mb in plan[step]),
        real_tokens=timed.real_tokens,
        peak_rss_bytes=peak_rss_mb() * 2**20,
        model_load_seconds=timed.model_load_seconds,
        compile_seconds=(max(0.0, timed.warm_seconds - len(warm) * timed.seconds / len(measured))
                         if config.train.compile else 0.0),
    )
