"""Predict a run's peak memory, time and cost before spending them — and what full finetuning or pretraining would cost.

Run as: tunesmith estimate examples/elements/demo.yaml [--hardware h100] [--price-per-hour 2.5] [--probe]

Recipe: real token lengths of the config's data → the exact micro-batch shapes of every step → FLOPs and
bytes (cost_model) → seconds on the hardware (peak × MFU for a GPU; measured by --probe, or a default, on
this CPU). The same arithmetic is repeated for a full finetune and for Chinchilla-style pretraining.
Supervised runs (lora, full) and preference runs (dpo) are modelled: a dpo step puts each pair's two answers
through the model, plus the reference model's forward (none for SimPO; each step's batch again with the adapters
off for a fresh LoRA adapter, or once over every pair before training). Reinforcement runs are timed instead
(--probe: estimate/reinforcement.py), their steps being mostly sampling of answers whose length the model chooses.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from tunesmith.config import ConfigError, RunConfig
from tunesmith.estimate.cost_model import (
    Expand,
    MicroBatchShape,
    Method,
    ModelShape,
    activation_bytes,
    allocator_growth,
    as_rows,
    eval_shapes,
    micro_batch_flops,
    plan_steps,
    read_model_shape,
    static_memory,
)
from tunesmith.estimate.hardware import GPU_RUNTIME_BYTES, Hardware, HardwareError, lookup_hardware
from tunesmith.models.load import load_tokenizer
from tunesmith.models.resolve import resolve_model_dir
from tunesmith.train.schedule import steps_per_epoch, total_steps
from tunesmith.train.setup import bf16_available, load_training_data

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal pretraining data ≈ 20 tokens per parameter
DISK_BYTES_PER_S = 400e6  # measured here: the 538 MB merged 135M model was written in 1.34 s


@dataclass
class Scenario:
    label: str
    method: str
    trainable: int
    steps: int
    tokens: float  # real (unpadded) tokens through the model over the run
    flops: float | None  # training FLOPs over the run (None: timed, not modelled — a reinforcement run's sampling)
    seconds_per_epoch: float
    train_seconds: float  # optimizer steps only
    total_seconds: float  # + loading, validation passes, checkpoints, export
    memory: dict[str, float]  # peak-memory parts, bytes
    measured_memory: bool = False  # memory comes from the probe's peak RSS
    cost: float | None = None
    reference_seconds: float = 0.0  # in total_seconds: a preference run's reference log-probs, scored before step 1

    @property
    def peak_memory_bytes(self) -> float:
        return sum(self.memory.values())


@dataclass
class Estimate:
    model: str
    hardware: Hardware
    bf16: bool
    train_examples: int
    epoch_tokens: int  # real tokens in one pass over the training data
    epoch_trained_tokens: int
    steps_per_epoch: int
    scenarios: list[Scenario]
    probe: dict | None = None
    price_per_hour: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        scenarios = [{**asdict(s), "peak_memory_bytes": s.peak_memory_bytes} for s in self.scenarios]
        return {**asdict(self), "scenarios": scenarios}


def current_rss_bytes() -> float:
    """Resident memory of this process now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        from tunesmith.train.loop import peak_rss_mb

        return peak_rss_mb() * 2**20


@dataclass(frozen=True)
class Workload:
    """What the run's loop steps on: supervised examples, or preference pairs and their reference forwards."""

    train: Sequence  # the loop's examples: TokenizedExample, or PreferenceExample (a pair)
    valid: Sequence
    expand: Expand = as_rows  # an example → what it puts through the model
    lora_reference: str = "none"  # a LoRA run's reference forwards: "none", "each step" (adapters off) or "once"
    full_reference: str = "none"  # the same run training all weights: "none" or "once"

    def rows(self) -> list:
        return self.expand(self.train)


def load_workload(config: RunConfig, tokenizer) -> Workload:
    if config.train.method in ("lora", "full"):
        data = load_training_data(config.data, tokenizer)
        return Workload(data.train, data.valid)
    if config.train.method == "dpo":
        from tunesmith.train.dpo import load_preference_data

        data = load_preference_data(config.data, tokenizer)
        once = "none" if config.dpo.loss == "simpo" else "once"
        fresh_adapter = config.dpo.reference == "auto" and config.model.parent is None  # train/dpo.adapter_is_fresh
        return Workload(data.train, data.valid, expand=pair_rows,
                        lora_reference="each step" if fresh_adapter and once == "once" else once, full_reference=once)
    raise ConfigError(f"the estimate models supervised and preference runs (train.method lora, full or dpo) and "
                      f"times reinforcement runs (--probe); a {config.train.method} run is not modelled yet — time a "
                      "few steps instead (train.max_steps, then metrics.jsonl)")


def pair_rows(pairs: Sequence) -> list:
    """A micro-batch of pairs as collate_pairs orders it: every preferred answer, then every other one."""
    return [pair.chosen for pair in pairs] + [pair.rejected for pair in pairs]


def micro_batch_cost(mb: MicroBatchShape, shape: ModelShape, method: Method, reference: str) -> float:
    """FLOPs of one training micro-batch, with the reference model's forward over it where each step runs one."""
    return micro_batch_flops(mb, shape, method) + (micro_batch_flops(mb, shape, Method("eval"))
                                                    if reference == "each step" else 0.0)


def method_of(config: RunConfig, shape: ModelShape, name: str | None = None) -> Method:
    name = name or ("lora" if config.train.uses_lora else "full")
    lora = name == "lora"
    return Method(
        name=name,
        lora_r=config.lora.r if lora else 0,
        lora_targets=tuple(shape.lora_targets(config.lora.target_modules)) if lora else (),
        activation_checkpointing=config.train.activation_checkpointing,
    )


def trainable_params(shape: ModelShape, method: Method) -> int:
    if method.name == "full":
        return shape.total_params
    return sum(method.lora_r * (n_in + n_out) for _, n_in, n_out in method.lora_targets)


def count_evaluations(steps: int, per_epoch: int, eval_every: int | None) -> int:
    """Validation passes the loop runs: every eval_every steps (or each epoch end), and after the last step."""
    due = steps // eval_every if eval_every else steps // per_epoch
    last_is_due = (steps % eval_every == 0) if eval_every else (steps % per_epoch == 0)
    return due + (0 if last_is_due else 1)


def memory_parts(shape: ModelShape, method: Method, biggest: float, hardware: Hardware, bf16: bool, steps: int,
                 runtime_bytes: float) -> dict[str, float]:
    parts = static_memory(shape, trainable_params(shape, method), bf16)
    parts["activations + logits (largest micro-batch)"] = biggest
    if hardware.kind == "cpu":
        parts["python, torch, tokenizer, data (measured)"] = runtime_bytes
        parts[f"allocator growth over {steps} steps"] = allocator_growth(biggest, steps)
    else:
        parts["CUDA context + allocator reserve"] = GPU_RUNTIME_BYTES
    return parts


def finetune_scenario(label: str, config: RunConfig, shape: ModelShape, method: Method, hardware: Hardware,
                      bf16: bool, plan: list[list[MicroBatchShape]], steps: int, per_epoch: int,
                      valid_shapes: list[MicroBatchShape], fixed_seconds: float, runtime_bytes: float,
                      reference: str = "none", reference_shapes: Sequence[MicroBatchShape] = ()) -> Scenario:
    """`reference`: "each step" adds the reference forward to every micro-batch and validation batch; "once" scores
    `reference_shapes` (every train and valid pair) before the first step."""
    step_flops = [sum(micro_batch_cost(mb, shape, method, reference) for mb in step) for step in plan]
    rate = hardware.achieved_flops
    train_flops = sum(step_flops[:steps])
    eval_flops = sum(micro_batch_flops(mb, shape, Method("eval")) for mb in valid_shapes)
    eval_flops *= 2 if reference == "each step" else 1
    reference_flops = sum(micro_batch_flops(mb, shape, Method("eval")) for mb in reference_shapes) if reference == "once" else 0.0
    evaluations = count_evaluations(steps, per_epoch, config.train.eval_every) if valid_shapes else 0
    trainable = trainable_params(shape, method)
    written = written_bytes(trainable, shape, method, math.ceil(steps / config.train.save_every))
    biggest = max(activation_bytes(mb, shape, method, bf16) for step in plan for mb in step)
    return Scenario(
        label=label,
        method=method.name,
        trainable=trainable,
        steps=steps,
        tokens=float(sum(mb.real_tokens for step in plan[:steps] for mb in step)),
        flops=train_flops,
        seconds_per_epoch=sum(step_flops[:per_epoch]) / rate,
        train_seconds=train_flops / rate,
        total_seconds=(train_flops + evaluations * eval_flops + reference_flops) / rate + written / DISK_BYTES_PER_S
        + fixed_seconds,
        memory=memory_parts(shape, method, biggest, hardware, bf16, steps, runtime_bytes),
        reference_seconds=reference_flops / rate,
    )


def written_bytes(trainable: int, shape: ModelShape, method: Method, saves: int) -> float:
    """Checkpoints (the trained weights and their AdamW moments) and the export (the merged model; LoRA's adapter)."""
    return saves * 12.0 * trainable + 4.0 * shape.total_params + (4.0 * trainable if method.name == "lora" else 0)


def reinforcement_estimate(config: RunConfig, hardware_name: str, price_per_hour: float | None, probe: bool,
                           probe_steps: int, probe_warmup: int) -> Estimate:
    """A reinforcement run's time and peak memory from real steps on this machine (estimate/reinforcement.py)."""
    from tunesmith.estimate.reinforcement import probe_reinforcement, refuse_unprobed
    from tunesmith.train.reinforce import checked_grader, load_prompt_data

    refuse_unprobed(probe)
    grader = checked_grader(config)
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model.base)
    data = load_prompt_data(config.data, tokenizer, grader)
    valid = data.valid[:config.reinforcement.valid_samples]
    shape = read_model_shape(resolve_model_dir(config.model.base))
    data_seconds = time.perf_counter() - started
    t = config.train
    steps = total_steps(len(data.train), t.batch_size, t.epochs, t.max_steps)
    per_epoch = steps_per_epoch(len(data.train), t.batch_size)
    probed = probe_reinforcement(config, data.train, valid, tokenizer, grader, probe_steps, probe_warmup)
    method = method_of(config, shape)
    trainable = trainable_params(shape, method)
    validations = count_evaluations(steps, per_epoch, t.eval_every) if valid else 0
    train_seconds = probed.seconds_per_step * steps
    written = written_bytes(trainable, shape, method, math.ceil(steps / t.save_every))
    total = (train_seconds + probed.validation_seconds * validations + written / DISK_BYTES_PER_S + data_seconds
             + probed.model_load_seconds)
    weights = f"LoRA r={config.lora.r}" if method.name == "lora" else "all weights"
    scenario = Scenario(
        label=f"reinforcement (GRPO), {weights} (config)",
        method=method.name,
        trainable=trainable,
        steps=steps,
        tokens=probed.real_tokens / probed.steps * steps,
        flops=None,
        seconds_per_epoch=probed.seconds_per_step * per_epoch,
        train_seconds=train_seconds,
        total_seconds=total,
        memory={f"peak RSS measured over {probed.warmup_steps + probed.steps} probe steps": probed.peak_rss_bytes},
        measured_memory=True,
        cost=None if price_per_hour is None else price_per_hour * total / 3600,
    )
    hardware = lookup_hardware("cpu")
    return Estimate(
        model=config.model.base, hardware=hardware, bf16=bf16_available() if t.bf16 is None else t.bf16,
        train_examples=len(data.train), epoch_tokens=sum(len(p.prompt_ids) for p in data.train),
        epoch_trained_tokens=0, steps_per_epoch=per_epoch, scenarios=[scenario],
        probe={**asdict(probed), "seconds_per_step": probed.seconds_per_step, "tokens_per_s": probed.tokens_per_s},
        price_per_hour=price_per_hour,
        notes=[hardware.description,
               f"reinforcement: {probed.steps} real steps timed after {probed.warmup_steps} warm-up "
               f"({probed.seconds_per_step:.1f} s a step, {probed.answers // probed.steps} answers each) and one "
               f"validation pass ({probed.validation_seconds:.1f} s, {len(valid)} prompts), scaled to the run; "
               "answers change length as the model learns, so this is the run at the pace of its start",
               "memory is the process's peak RSS over the probe steps (not grown to the run's length)",
               "epoch tokens are the prompts' (answers are sampled during the run)"],
    )


def pretraining_scenario(config: RunConfig, shape: ModelShape, hardware: Hardware, bf16: bool,
                         rows_per_micro_batch: int, runtime_bytes: float) -> Scenario:
    """From scratch on 20 tokens per parameter: full rows of max_length, the config's rows per micro-batch."""
    tokens = CHINCHILLA_TOKENS_PER_PARAM * shape.total_params
    width = config.data.max_length
    mb = MicroBatchShape(rows_per_micro_batch, width, rows_per_micro_batch * width, rows_per_micro_batch * width)
    method = Method("full", activation_checkpointing=config.train.activation_checkpointing)
    micro_steps = tokens / mb.real_tokens
    accumulation = math.ceil(config.train.batch_size / (config.train.micro_batch_size or config.train.batch_size))
    steps = max(1, math.ceil(micro_steps / accumulation))
    flops = micro_steps * micro_batch_flops(mb, shape, method)
    seconds = flops / hardware.achieved_flops
    return Scenario(
        label=f"pretrain ({CHINCHILLA_TOKENS_PER_PARAM} tok/param)",
        method="pretrain",
        trainable=shape.total_params,
        steps=steps,
        tokens=float(tokens),
        flops=flops,
        seconds_per_epoch=seconds,
        train_seconds=seconds,
        total_seconds=seconds,
        memory=memory_parts(shape, method, activation_bytes(mb, shape, method, bf16), hardware, bf16, steps, runtime_bytes),
    )


def apply_probe(scenario: Scenario, probe, biggest: float) -> None:
    """Replace the modelled memory with the probe's measured peak, grown to the run's length."""
    probed_steps = probe.steps + probe.warmup_steps
    scenario.memory = {
        f"peak RSS measured over {probed_steps} probe steps": probe.peak_rss_bytes,
        f"allocator growth from step {probed_steps} to {scenario.steps}": allocator_growth(biggest, scenario.steps, probed_steps),
    }
    scenario.measured_memory = True


def estimate_config(config: RunConfig, hardware_name: str = "cpu", price_per_hour: float | None = None,
                    probe: bool = False, mfu: float | None = None, probe_steps: int = 4,
                    probe_warmup: int = 2, runtime_bytes: float | None = None) -> Estimate:
    """`runtime_bytes`: the memory a training process holds besides the model (python, torch, libraries, data);
    None = this process's now. A server passes what it measured before loading any model."""
    lookup_hardware(hardware_name, mfu)  # fail on an unknown name before any slow work
    if probe and hardware_name.lower() != "cpu":
        raise HardwareError("--probe measures this machine; use it with --hardware cpu")
    if config.train.method == "reinforcement":
        return reinforcement_estimate(config, hardware_name, price_per_hour, probe, probe_steps, probe_warmup)
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model.base)
    data = load_workload(config, tokenizer)
    shape = read_model_shape(resolve_model_dir(config.model.base))
    data_seconds = time.perf_counter() - started
    import peft  # noqa: F401  (part of what a training process holds in memory)

    runtime_bytes = current_rss_bytes() if runtime_bytes is None else runtime_bytes
    t = config.train
    micro = t.micro_batch_size or t.batch_size
    steps = total_steps(len(data.train), t.batch_size, t.epochs, t.max_steps)
    per_epoch = steps_per_epoch(len(data.train), t.batch_size)
    plan = plan_steps(data.train, max(steps, per_epoch), t.batch_size, micro, t.seed, config.data.max_length,
                      config.data.packing, config.data.share_prefix, data.expand)
    valid_shapes = eval_shapes(data.valid, config.data.max_length, config.data.packing,
                               share_prefix=config.data.share_prefix, expand=data.expand)
    reference_shapes = [mb for split in (data.train, data.valid)  # train/reference.score_pairs: 16 pairs a batch
                        for mb in eval_shapes(split, config.data.max_length, config.data.packing, expand=data.expand)
                        ] if "once" in (data.lora_reference, data.full_reference) else []  # a run scoring it first
    is_cpu = hardware_name.lower() == "cpu"
    bf16 = t.bf16 if t.bf16 is not None else (bf16_available() if is_cpu else True)
    method = method_of(config, shape)
    reference = data.lora_reference if method.name == "lora" else data.full_reference

    probed = None
    if probe:
        from tunesmith.estimate.probe import run_probe

        probed = run_probe(config, probe_examples(data, reference), tokenizer.pad_token_id, plan[:steps], shape,
                           method, lambda mb: micro_batch_cost(mb, shape, method, reference),
                           steps=probe_steps, warmup=probe_warmup)
    hardware = lookup_hardware(hardware_name, mfu, probed.flops_per_s if probed else None)
    load_seconds = probed.model_load_seconds if probed else 4.0 * shape.total_params / DISK_BYTES_PER_S
    fixed = data_seconds + load_seconds + (probed.compile_seconds if probed else 0.0)
    common = dict(config=config, shape=shape, hardware=hardware, bf16=bf16, plan=plan, steps=steps, per_epoch=per_epoch,
                  valid_shapes=valid_shapes, fixed_seconds=fixed, runtime_bytes=runtime_bytes,
                  reference_shapes=reference_shapes)
    label = f"LoRA r={config.lora.r} (config)" if method.name == "lora" else "full finetune (config)"
    if config.train.method == "dpo":
        label = f"dpo ({config.dpo.loss}), {label}"
    scenarios = [finetune_scenario(label, method=method, reference=reference, **common)]
    if probed is not None:
        biggest = max(activation_bytes(mb, shape, method, bf16) for step in plan for mb in step)
        apply_probe(scenarios[0], probed, biggest)
    if method.name == "lora":
        scenarios.append(finetune_scenario("full finetune", method=method_of(config, shape, "full"),
                                           reference=data.full_reference, **common))
    rows = max(mb.rows for step in plan for mb in step)
    scenarios.append(pretraining_scenario(config, shape, hardware, bf16, rows, runtime_bytes))
    for scenario in scenarios:
        scenario.cost = None if price_per_hour is None else price_per_hour * scenario.total_seconds / 3600

    return Estimate(
        model=config.model.base,
        hardware=hardware,
        bf16=bf16,
        train_examples=len(data.train),
        epoch_tokens=sum(len(e.input_ids) for e in data.rows()),
        epoch_trained_tokens=sum(e.num_trained for e in data.rows()),
        steps_per_epoch=per_epoch,
        scenarios=scenarios,
        probe=None if probed is None else {**asdict(probed), "flops_per_s": probed.flops_per_s,
                                             "tokens_per_s": probed.tokens_per_s},
        price_per_hour=price_per_hour,
        notes=estimate_notes(hardware, bf16, probed is not None, config.train.compile),
    )


def probe_examples(data: Workload, reference: str) -> Sequence:
    """The examples the probe trains on: a pair whose run scores its reference once carries it (any value: the step
    runs no reference forward), as the run's pairs will; a fresh adapter's pairs go without (the step runs it)."""
    if reference != "once":
        return data.train
    return [replace(pair, reference=(0.0, 0.0)) for pair in data.train]


def estimate_notes(hardware: Hardware, bf16: bool, probed: bool, compiled: bool) -> list[str]:
    notes = [hardware.description]
    if compiled and not probed:
        notes.append("train.compile is not modelled without --probe (on a CPU its steps ran 25-30% faster after ~45 s of compiling)")
    if hardware.kind == "cpu":
        notes.append("memory is the process's peak RSS" + (" (measured by the probe, grown to the run's length)" if probed else ""))
        if not probed:
            notes.append("speed is a default measured on a 2-core AMX Xeon: pass --probe to measure this machine")
        notes.append("full finetune and pretraining use the same FLOP/s as this config's method")
    else:
        notes.append("memory is GPU memory: fp32 weights with bf16 autocast, as tunesmith trains")
    if not bf16:
        notes.append("bf16 off: fp32 activations (estimated, not measured)")
    return notes
