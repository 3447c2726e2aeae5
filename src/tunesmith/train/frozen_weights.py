"""Frozen Linear weights held in bf16 while a LoRA run trains under bf16 autocast.

Autocast caches its casts only for weights that require grad, so every frozen base weight is cast
fp32 → bf16 again in every forward and its backward: on the 135M model at batch 4 those copies were
~15% of a step's CPU time (profile: aten::copy_ 481 ms of 3.3 s over 5 steps). Casting each frozen
Linear weight once gives the matmuls the very same bf16 values (autocast rounds the same way), so the
losses and the trained adapter are bit-identical (tests/train/test_frozen_weights.py) and the step is faster.

The fp32 originals are kept aside and put back when training ends (or fails), before the adapter is merged
for export: the merged model is the fp32 base plus the adapter, as without this. The price is the bf16
copies' memory (about half the Linear weights' fp32 size) while training.

An output head tied to the input embeddings (SmolLM2's) gets a bf16 copy of its own while the embedding keeps
the fp32 weight (its lookup is not autocast, so a bf16 table would make the residual stream bf16); on exit the
head holds the shared weight again, tied as before. Cast in each call, that 49152 × 576 head weight took 17 ms
a call, three calls a step with general-text replay: 7% of the demo's LoRA step. Norms and embeddings stay fp32;
only `torch.nn.Linear` weights are touched.

peft casts a LoRA layer's input to its adapter's dtype (fp32) before the adapter's matmuls, and autocast casts it
back to bf16 for them: for o_proj and down_proj, whose inputs are bf16 already, two copies of each input a layer
and their two casts back in the backward. Inside, that cast is off (peft's `cast_input_dtype_enabled`): bf16 →
fp32 → bf16 is exact, so the matmuls see the same values and the run stays bit-identical.

Used in single-process runs only (sft.py): FSDP and DeepSpeed flat parameters expect one dtype, and DDP with
swapped weights is not yet tested.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from peft.tuners.lora import LoraLayer


def frozen_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad
            and m.weight.dtype == torch.float32]


@contextlib.contextmanager
def frozen_weights_in_bf16(model: torch.nn.Module, enabled: bool) -> Iterator[int]:
    """Inside: every frozen fp32 Linear weight is a bf16 copy; on exit the fp32 weights are back. Yields their count."""
    if not enabled:
        yield 0
        return
    originals = [(layer, layer.weight) for layer in frozen_linears(model)]
    for layer, weight in originals:
        layer.weight = torch.nn.Parameter(weight.detach().to(torch.bfloat16), requires_grad=False)
    adapters = [(layer, layer.cast_input_dtype_enabled) for layer in model.modules() if isinstance(layer, LoraLayer)]
    for layer, _ in adapters:
        layer.cast_input_dtype_enabled = False  # autocast gives the adapters' matmuls bf16 inputs either way
    try:
        yield len(originals)
    finally:
        for layer, weight in originals:
            layer.weight = weight
        for layer, cast in adapters:
            layer.cast_input_dtype_enabled = cast
