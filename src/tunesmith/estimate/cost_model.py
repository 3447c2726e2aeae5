"""Cost arithmetic before training: the FLOPs and memory of each step, from the model's shape and the data's real lengths.

Run as: library code; `tunesmith estimate examples/elements/demo.yaml` prints what it computes.

Everything here is a pure function of shapes: no weights are loaded. The counts follow what tunesmith's loop
does: packed (or padded) rows of the micro-batch through the decoder, the output head only on trained
positions in chunks of LOSS_CHUNK (train/loss.py), LoRA adapters on frozen weights or a full finetune, bf16 autocast over fp32 weights.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tunesmith.data.render import TokenizedExample
from tunesmith.train.loss import LOSS_CHUNK
from tunesmith.train.packing import row_layout
from tunesmith.train.schedule import micro_batches, step_example_indices

# Growth of a CPU process's peak RSS with the number of steps: glibc keeps the freed activation blocks of
# differently shaped batches fragmented, so RSS climbs for hundreds of steps. Measured on this machine
# (2 threads, demo.yaml): +1.4x the step's activations after 9 steps, +1.8x after 30, +2.6x after 186
# (LoRA); +0.4x after 9 (full). Modelled as ALLOCATOR_GROWTH · ln(1 + steps) · activations, capped at
# ALLOCATOR_GROWTH_CAP (the growth must level off; it was not measured beyond 186 steps).
ALLOCATOR_GROWTH = 0.4
ALLOCATOR_GROWTH_CAP = 3.0


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs from a causal LM, read from its config.json without loading weights."""

    hidden: int
    intermediate: int
    layers: int
    q_dim: int  # attention heads × head dim (k and v are expanded to this for sdpa)
    vocab: int
    total_params: int  # tied embeddings counted once
    linear_params: int  # every nn.Linear in the decoder, the output head excluded
    head_params: int  # vocab × hidden: the output head's matmul (tied or not)
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) for each decoder linear: LoRA targets

    def lora_params(self, r: int, target_modules) -> int:
        return sum(r * (n_in + n_out) for _, n_in, n_out in self.lora_targets(target_modules))

    def lora_targets(self, target_modules) -> list[tuple[str, int, int]]:
        if target_modules == "all-linear":
            return list(self.linears)
        wanted = set(target_modules)
        return [entry for entry in self.linears if entry[0].rsplit(".", 1)[-1] in wanted]


def model_shape_of(model) -> ModelShape:
    config = model.config
    head = model.get_output_embeddings()
    linears = tuple(
        (name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(
        hidden=config.hidden_size,
        intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
        layers=config.num_hidden_layers,
        q_dim=heads * head_dim,
        vocab=config.vocab_size,
        total_params=sum(p.numel() for p in model.parameters()),
        linear_params=sum(n_in * n_out for _, n_in, n_out in linears),
        head_params=config.vocab_size * config.hidden_size,
        linears=linears,
    )


def read_model_shape(model_dir) -> ModelShape:
    """Build the architecture on the meta device (no memory, no weights) and read its shape."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model_shape_of(model)


@dataclass(frozen=True)
class MicroBatchShape:
    rows: int
    width: int  # every row is padded to the widest
    real_tokens: int
    trained_tokens: int

    @property
    def positions(self) -> int:
        return self.rows * self.width


def micro_batch_shape(examples: list[TokenizedExample], max_length: int, packing: bool,
                      share_prefix: bool = False) -> MicroBatchShape:
    """The shape tunesmith.train.packing.collate gives these examples, without building tensors."""
    layout = row_layout(examples, max_length, packing, share_prefix)
    return MicroBatchShape(len(layout.rows), layout.width, sum(len(e.input_ids) for e in examples),
                           sum(e.num_trained for e in examples))


# What one of the loop's examples puts through the model: a supervised example itself; a preference pair its
# preferred and its other answer, every pair's preferred ones first (train/preference_objective.collate_pairs).
Expand = Callable[[Sequence], list[TokenizedExample]]


def as_rows(examples: Sequence) -> list[TokenizedExample]:
    return list(examples)


def plan_steps(examples: Sequence, steps: int, batch_size: int, micro_batch_size: int, seed: int,
               max_length: int, packing: bool, share_prefix: bool = False,
               expand: Expand = as_rows) -> list[list[MicroBatchShape]]:
    """Micro-batch shapes of each optimizer step, in the order the loop will see them."""
    plan = []
    for step in range(steps):
        _, indices = step_example_indices(step, len(examples), batch_size, seed)
        plan.append([micro_batch_shape(expand([examples[i] for i in chunk]), max_length, packing, share_prefix)
                     for chunk in micro_batches(indices, micro_batch_size)])
    return plan


def eval_shapes(examples: Sequence, max_length: int, packing: bool, batch_size: int = 16,
                share_prefix: bool = False, expand: Expand = as_rows) -> list[MicroBatchShape]:
    """Shapes of one validation pass (tunesmith.train.loop.validation_loss: batches of 16)."""
    return [micro_batch_shape(expand(examples[i : i + batch_size]), max_length, packing, share_prefix)
            for i in range(0, len(examples), batch_size)]


@dataclass(frozen=True)
class Method:
    """How a pass treats the weights: which gradients it computes and which tensors it keeps."""

    name: str  # "lora", "full" or "eval"
    lora_r: int = 0
    lora_targets: tuple[tuple[str, int, int], ...] = ()
    activation_checkpointing: bool = False

    @property
    def adapters_per_layer(self) -> float:
        return len(self.lora_targets)


def micro_batch_flops(mb: MicroBatchShape, shape: ModelShape, method: Method) -> float:
    """FLOPs of forward (+ backward) of one micro-batch; a matmul of (m,k)·(k,n) counts 2mkn.

    Forward: 2·params per position for the decoder linears (padding positions are computed too), attention
    4·T²·q_dim per row and layer (QKᵀ and AV over the full T×T: the block mask skips no work), the output head
    2·V·H per trained position only. Backward is 2x forward for activations plus 1x for weight gradients, so
    full = 3x forward, LoRA = 2x forward on frozen weights + 3x on the small adapters; attention is always 3x.
    """
    linear = 2.0 * shape.linear_params * mb.positions
    attention = 4.0 * shape.layers * shape.q_dim * mb.rows * mb.width**2
    head = 2.0 * shape.head_params * mb.trained_tokens
    adapters = 2.0 * method.lora_r * sum(n_in + n_out for _, n_in, n_out in method.lora_targets) * mb.positions
    if method.name == "eval":
        return linear + attention + head
    if method.name == "full":
        body, head_total = 3 * linear + 3 * attention, 3 * head
    else:
        body, head_total = 2 * linear + 3 * attention + 3 * adapters, 2 * head
    if method.activation_checkpointing:
        body += linear + attention + adapters  # the forward is recomputed during backward
    if mb.trained_tokens > LOSS_CHUNK:
        head_total += head  # chunked loss recomputes each chunk's logits in backward
    return body + head_total


def activation_bytes(mb: MicroBatchShape, shape: ModelShape, method: Method, bf16: bool) -> float:
    """Tensors autograd keeps for backward over one micro-batch, plus the loss chunk's logits.

    Per position and layer, counted with saved-tensor hooks on the HF Llama layer under CPU bf16 autocast
    (SmolLM2-135M, H=576, I=1536): each linear saves its own bf16 cast of its input (6 of width H, 1 of I),
    the MLP keeps gate, up and act (3·I bf16), attention keeps q, k, v, out (4·q_dim bf16), the two RMSNorms
    their fp32 inputs (2·H fp32; 4·H when their weights train). Per layer and row the additive mask (T² bf16).
    Without autocast, one fp32 copy per distinct input (not counted with hooks; an estimate).
    """
    h, i, q = shape.hidden, shape.intermediate, shape.q_dim
    lora = 2 * method.lora_r * method.adapters_per_layer
    if bf16:
        norms = 16 * h if method.name == "full" else 8 * h
        per_position = 2 * (4 * i + 6 * h + 4 * q) + norms + lora
        mask = 2 * mb.width**2
    else:
        per_position = 4 * (4 * i + 5 * h + 4 * q) + 2 * lora
        mask = 4 * mb.width**2
    if method.activation_checkpointing:  # keep each layer's input; recompute one layer at a time
        layers = 4 * h * mb.positions * shape.layers + (per_position * mb.positions + mask * mb.rows)
    else:
        layers = (per_position * mb.positions + mask * mb.rows) * shape.layers
    # Output head on one chunk of trained positions: bf16 logits, their fp32 copy and fp32 log-softmax.
    logits = min(mb.trained_tokens, LOSS_CHUNK) * shape.vocab * (10 if bf16 else 8)
    return float(layers + logits)


def static_memory(shape: ModelShape, trainable: int, bf16: bool) -> dict[str, float]:
    """Bytes that do not depend on the batch: fp32 weights, their bf16 casts, gradients, AdamW moments."""
    return {
        "weights (fp32)": 4.0 * shape.total_params,
        "bf16 weight casts": 2.0 * (shape.linear_params + shape.head_params) if bf16 else 0.0,
        "gradients (fp32)": 4.0 * trainable,
        "AdamW moments": 8.0 * trainable,
    }


def allocator_growth(activations: float, steps: int, already: int = 0) -> float:
    """Extra CPU RSS from heap fragmentation between step `already` and step `steps` (see ALLOCATOR_GROWTH)."""
    def factor(n: int) -> float:
        return min(ALLOCATOR_GROWTH_CAP, ALLOCATOR_GROWTH * math.log1p(n))

    return activations * max(0.0, factor(steps) - factor(already))
