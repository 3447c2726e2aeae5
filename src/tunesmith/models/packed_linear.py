"""Inference-only linear layers whose weights (bf16, or float32) oneDNN has reordered once into its blocked layout.

A plain `F.linear` on a CPU hands oneDNN a row-major weight at every call, and oneDNN works from that layout;
`torch.ops.mkldnn._reorder_linear_weight` lays the weight out the way its kernel reads it, once, and
`_linear_pointwise` then multiplies against that copy (this is what `torch.compile` does on a CPU with
freezing on; here it is done without compiling). The results are bit-identical to `F.linear`.

Measured (benchmarks/README.md, "packed linears"; SmolLM2-135M's 211 linears in sequence, bf16, 2 threads of
an AMD EPYC with AVX512-BF16): 1 row 24.7 → 20.3 ms, 4 rows 24.4 → 14.7 ms, 16 rows 35.7 → 20.5 ms,
64 rows 78.3 → 59.6 ms, 600 rows (a prefill) 497 → 424 ms.

Each packed layer keeps its own weight too (the embedding it may be tied to, peft and `state_dict` read it),
so a packed model holds its linear weights twice. A layer repacks when its weight changes: new storage (stacked
LoRA's `weight.data = joint[...]`) or an in-place op on the parameter itself, which moves its version counter.
A write through `weight.data` in place (peft's merge does `weight.data += delta`) moves neither: pack a model
after such writes, not before. The server and the evaluation pack models as loaded and never merge into them.
No autograd: inference only.

Sibling projections that read the same input (an attention layer's q/k/v, an MLP's gate/up) are packed as one
matrix (`PackedGroup`): the first of them called with an input multiplies it by all of them at once, and each
sibling takes its columns of that product. oneDNN accumulates each output column the same way whatever the
matrix's width, so the slices are bit-identical to separate products (tests/models/test_packed_linear.py).
Measured (SmolLM2-135M's 30 layers of q/k/v + gate/up, packed, 2 threads): 1 row 8.95 → 7.19 ms, 4 rows 7.95 →
6.26 ms, 16 rows 11.18 → 9.32 ms a decoding step (60 calls instead of 150).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from tunesmith.models.classifier import bf16_supported
from tunesmith.models.cpu import amd_cpu

PACK_ROWS_HINT = 16  # oneDNN picks its blocking for this many input rows; measured fastest from 1 to 600 rows
SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # siblings' names (Llama, Qwen2, Mistral, Gemma)


def bf16_kernels() -> bool:
    """This CPU's oneDNN has bf16 kernels."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def packed_dtypes() -> tuple[torch.dtype, ...]:
    """The weight dtypes packed by default on this CPU: bf16 where oneDNN has bf16 kernels; float32 where the CPU has
    no bf16 matmuls in hardware (AVX512-BF16 or AMX), so that float32 is what it serves and evaluates
    (models/load.py's inference_dtype), and on AMD CPUs, where float32 is served when asked.

    float32 measured (benchmarks/README.md "float32 packed linears", 2 threads): oneDNN's packed product against
    `F.linear`, which multiplies float32 through MKL's sgemm. On an Intel Xeon with AVX-512 and no bf16 matmuls, at 16
    rows: q/k/v 204 against 538 us, gate/up 410 against 1650 us, the output head 12.0 against 30.7 ms; at one row MKL
    was the faster. On an AMD EPYC (AVX512-BF16), every linear of the model at 1 / 4 / 16 rows 1.66x / 2.77x / 1.92x
    faster packed, 64 and 600 rows equal, the engine's 16 prompts 100.0 -> 183.5 tokens/s and one prompt 15.5 -> 21.4
    (a Zen 4 EPYC; AMD CPUs without AVX-512 are not measured). Not measured on the Intel Xeon with AMX, so not packed
    there by default. In float32 it is not bit-identical to `F.linear` (MKL and oneDNN sum in other orders:
    differences of ~1e-4 in outputs of ~10), as it is in bf16; `pack_linears` packs float32 models anywhere when asked."""
    if not torch.backends.mkldnn.is_available():
        return ()
    float32 = not bf16_supported(torch.device("cpu")) or amd_cpu()
    return ((torch.bfloat16,) if bf16_kernels() else ()) + ((torch.float32,) if float32 else ())


# float32 inputs of this many rows (inclusive) multiply through the packed weight; fewer or more take `F.linear`
# (MKL's sgemm), which measured faster there (benchmarks/README.md "float32 packed linears", the Intel Xeon without
# bf16 matmuls: a model's linears at 1 row 27.5 ms plain against 40.0 packed, 16 rows 113.9 against 49.4, 64 rows
# within 10% either way, 600 rows 0.96x packed; the demo's evaluation, whose generation decodes 128 rows, 128.6 s
# plain against 145.9 s all packed). On AMD CPUs from one row: packed was the faster there at 1 row too (above).
# bf16 inputs always take the packed weight. So in float32 a row's logits can differ at rounding level (~1e-7) with
# the rows it is multiplied beside (a prefill after a stored prefix, a batch that shrinks to 2 rows): greedy answers
# matched sequential float32's 16/16 in the serving benchmark.
FLOAT32_PACKED_ROWS = (1 if amd_cpu() else 3, 48)


def packed_is_faster(x: torch.Tensor) -> bool:
    """Whether x (..., in) multiplies faster through a packed weight than through `F.linear`."""
    low, high = FLOAT32_PACKED_ROWS
    return x.dtype != torch.float32 or low <= x.numel() // x.shape[-1] <= high


def packing_supported(model: torch.nn.Module) -> bool:
    """Weights of a packed dtype (packed_dtypes) on the CPU."""
    weight = next(model.parameters())
    return weight.device.type == "cpu" and weight.dtype in packed_dtypes()


class PackedWeight:
    """One weight (out, in) in oneDNN's layout, repacked when the weight it was made from changes."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight
        self.key: tuple | None = None
        self.packed: torch.Tensor | None = None

    def current(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version, tuple(self.weight.shape))
        if key != self.key:
            with torch.inference_mode(False), torch.no_grad():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), PACK_ROWS_HINT)
            self.key = key
        return self.packed


class SharedProduct:
    """One product of an input that sibling layers read, each taking its own columns of it: computed by the first
    sibling called with an input, afresh for another input or a sibling called twice, and let go once every
    sibling has taken its part."""

    def __init__(self, widths: list[int]):
        ends = list(itertools.accumulate(widths))
        self.columns = list(zip([0, *ends[:-1]], ends))
        self.input: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self.taken: set[int] = set()

    def take(self, index: int, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Sibling `index`'s columns of compute(x)."""
        if x is not self.input or index in self.taken:
            self.input, self.output, self.taken = x, compute(x), set()
        start, end = self.columns[index]
        out = self.output[..., start:end]
        self.taken.add(index)
        if len(self.taken) == len(self.columns):
            self.input = self.output = None
        return out


class PackedGroup:
    """Sibling linears that read the same input, packed as one matrix (their weights stacked, in order), their
    joint product shared (SharedProduct). Repacked when any sibling's weight changes (as PackedWeight)."""

    def __init__(self, layers: list[torch.nn.Linear]):
        self.layers = layers
        self.product = SharedProduct([layer.out_features for layer in layers])
        self.key: tuple | None = None
        self.packed: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def current(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = tuple((layer.weight.data_ptr(), layer.weight._version, tuple(layer.weight.shape)) for layer in self.layers)
        if key != self.key:
            with torch.inference_mode(False), torch.no_grad():
                joint = torch.cat([layer.weight.detach() for layer in self.layers])
                self.packed = torch.ops.mkldnn._reorder_linear_weight(joint, PACK_ROWS_HINT)
                biases = [layer.bias for layer in self.layers]
                self.bias = None if biases[0] is None else torch.cat([bias.detach() for bias in biases])
            self.key = key
        return self.packed, self.bias

    def output_of(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Sibling `index`'s output for x: its columns of the joint product."""
        return self.product.take(index, x, self.multiply)

    def multiply(self, x: torch.Tensor) -> torch.Tensor:
        packed, bias = self.current()
        rows = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), packed, bias, "none", [], "")
        return rows.view(*x.shape[:-1], rows.shape[-1])


def packed_linear(x: torch.Tensor, weight: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight.weight, bias)` through the packed copy; x is (..., in)."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(rows, weight.current(), bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def packed_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its linears packed where that applies (packing_supported)."""
    if packing_supported(model):
        pack_linears(model)
    return model


def packable(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    return type(module) is torch.nn.Linear and module.weight.dtype == dtype and "forward" not in module.__dict__


def pack_linears(model: torch.nn.Module) -> int:
    """Every nn.Linear of the model in its weights' dtype runs through a packed copy of its weight, siblings that
    read the same input (SHARED_INPUT) through one packed group; returns how many linears.

    Layers of other dtypes (peft's float32 LoRA matrices on a bf16 model) keep their own forward."""
    dtype = next(model.parameters()).dtype
    packable_here = lambda module: packable(module, dtype)
    count = 0
    for parent in list(model.modules()):
        for names in SHARED_INPUT:
            siblings = [getattr(parent, name, None) for name in names]
            if all(packable_here(layer) for layer in siblings) and len({layer.in_features for layer in siblings}) == 1 \
                    and len({layer.bias is None for layer in siblings}) == 1:
                group = PackedGroup(siblings)
                for index, layer in enumerate(siblings):
                    layer.packed_group, layer.packed_weight = (group, index), PackedWeight(layer.weight)
                    layer.forward = _packed_forward.__get__(layer)
                    count += 1
    for module in model.modules():
        if packable_here(module):
            module.packed_weight = PackedWeight(module.weight)
            module.forward = _packed_forward.__get__(module)
            count += 1
    return count


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != self.weight.dtype or torch.is_grad_enabled() or self.packed_weight.weight is not self.weight \
            or not packed_is_faster(x):
        return torch.nn.functional.linear(x, self.weight, self.bias)
    if (grouped := self.__dict__.get("packed_group")) is not None:
        group, index = grouped
        return group.output_of(index, x)
    return packed_linear(x, self.packed_weight, self.bias)
