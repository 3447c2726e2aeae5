"""Every LoRA adapter of a served peft model applied per row in one pass, instead of peft's mixed-batch loop.

peft's mixed-adapter inference (`adapter_names`) loops, in every LoRA layer at every step, over the batch's
adapters: a Python list of row indices, a gather, a cast, two matmuls and a scatter-add per adapter.
Measured: 16 rows cycling base / adapter a / adapter b cost 39.7% of the plain base model's tokens/s
(SmolLM2-135M, LoRA r 16 on all linear layers, 210 LoRA layers, one thread).

Here each LoRA layer keeps its adapters' A matrices stacked, (R, in), and their B matrices side by side,
(out, R), R = the sum of their ranks (both stored transposed and contiguous). While a batch runs, each LoRA
layer's forward is its base layer's plus ((x @ A^T) * mask) @ B^T for all rows at once, where the mask
(rows, R) keeps, for each row, its own adapter's columns times that adapter's scaling (no columns for a base
row); outside a batch the layer runs peft's forward. Where the base layer is a plain nn.Linear the A matrices
are appended under its weight (which becomes a view of that joint matrix: no second copy), so one matmul gives
the base output and x @ A^T, and A and B are in the base dtype (bf16 when serving in bf16); else, like peft, they
stay float32 and the input is cast to them. Measured (mixed_lora, 16 x 64 tokens through the batcher, base /
a / b cycling, one process, 10:12 UTC, load 1.3-2.1): cost 0.500 -> 0.432 with 2 threads, 0.152 -> 0.078 with
1 thread. LoRA layers whose base layers are packed siblings that read one input (q/k/v, gate/up:
models/packed_linear.py's PackedGroup) go further as one `SiblingStack`: one packed matmul gives all their
base outputs and x A^T, one block-diagonal matmul their B products (4 LoRA passes per SmolLM2 layer instead of
7), and B is packed too. Measured (16 x 64 tokens in the engine, base / a / b cycling, one model with the
sibling stacks on and off in turn, 2 threads, one OpenMP pool, 2026-12-04): decode 3.19 -> 2.78 s, cost
against the base model 30.5% -> 21.9%; with B packed, 27.5% -> 20.2%; the same answers either way. Memory: a
sibling stack packs its own copy of the siblings' base weights (the base group's packed copy still serves
batches with no adapter row), so with adapters loaded q/k/v and gate/up are held three times: plain, packed,
and packed with the A matrices (SmolLM2-135M: 70M parameters, about 0.14 GB more in bf16).
Adapters this does not cover (DoRA and other variants, LoRA biases, non-Linear layers) leave the
model to peft's own path.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from collections.abc import Callable
from functools import partial

import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer

from tunesmith.models.packed_linear import PACK_ROWS_HINT, PackedWeight, SharedProduct, packed_linear

# (adapters_key, StackedLora or None), kept on the model itself: the stacks refer to the model, so a WeakKeyDictionary
# value would keep its key alive and a model the pool lets go would never be freed; on the model it is one cycle
STACKS_ATTRIBUTE = "_tunesmith_stacked_lora"


def stacked_lora(model: PeftModel) -> StackedLora | None:
    """The model's stacked adapters (one per model: it owns the layers' forwards), rebuilt when its adapters
    change; None when they are not stackable (then peft's own mixed batch serves them)."""
    key = adapters_key(model)
    known = model.__dict__.get(STACKS_ATTRIBUTE)
    if known is not None and known[0] == key:
        return known[1]
    if known is not None and known[1] is not None:
        known[1].close()
    built = StackedLora(model) if stackable(model) else None
    model.__dict__[STACKS_ATTRIBUTE] = (key, built)
    return built


def adapters_key(model: PeftModel) -> tuple:
    """Changes whenever an adapter is added, deleted or loaded again under the same name."""
    return (id(model),) + tuple((name, id(config)) for name, config in model.peft_config.items())


def stackable(model: PeftModel) -> bool:
    for module in model.modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear) or module.lora_variant or module.lora_embedding_A:
                return False
            if any(layer.bias is not None for layer in module.lora_B.values()):
                return False
    return True


@dataclass
class Stack:
    """One LoRA layer's adapters, stacked. R = the sum of their ranks."""

    layout: tuple  # (name, first column, end column, scaling) per adapter
    b: torch.Tensor  # (R, out): the B matrices side by side, transposed
    a: torch.Tensor | None = None  # (in, R): the A matrices stacked, transposed (not fused)
    joint: torch.Tensor | None = None  # fused: (out + R, in), the base weight with the A matrices under it
    packed: PackedWeight | None = None  # the joint matrix in oneDNN's layout, where the base layer is packed
    b_packed: PackedWeight | None = None  # B (out, R) in oneDNN's layout, likewise (bit-identical, 5-25% faster)


class SiblingStack:
    """The stacks of LoRA layers whose base layers read one input (a packed group's siblings, in its order), all
    with the same adapters: [W_1; ...; W_n; A_1; ...; A_n] packed as one matrix, the B matrices block-diagonal.
    The first sibling called with an input computes every sibling's output; the others take their columns."""

    def __init__(self, stacks: list[Stack]):
        self.layout = stacks[0].layout
        outs = [stack.b.shape[1] for stack in stacks]
        self.product = SharedProduct(outs)  # models/packed_linear.py: the first sibling called computes, the rest take
        self.width = sum(outs)  # the base outputs' columns; x A^T's follow
        rank = stacks[0].b.shape[0]
        joint = torch.cat([stack.joint[:out] for stack, out in zip(stacks, outs)] +
                          [stack.joint[out:] for stack, out in zip(stacks, outs)])  # (width + n R, in)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(joint, PACK_ROWS_HINT)
        b = torch.zeros(self.width, len(stacks) * rank, dtype=stacks[0].b.dtype)  # (width, n R): as a linear's weight
        for i, (stack, (start, end)) in enumerate(zip(stacks, self.product.columns)):
            b[start:end, i * rank:(i + 1) * rank] = stack.b.t()
        self.b = PackedWeight(b)

    def output_of(self, index: int, x: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Sibling `index`'s output for x, each row with its adapter (mask: (rows, 1, n R))."""
        out = self.product.take(index, x, lambda x: self.multiply(x, mask))
        return out if bias is None else out + bias

    def multiply(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.packed, None, "none", [], "")
        both = rows.view(*x.shape[:-1], rows.shape[-1])
        return packed_linear(both[..., self.width:] * mask, self.b).add_(both[..., :self.width])


@dataclass
class DirectLora:
    """LoRA layers that read one input, all packed and fused (a SiblingStack's, or one layer's): their outputs for
    a 2-D input inside rows() in two products and no per-layer dispatch, for the decoder
    (models/decoding/decode_step.py). The same arithmetic as `StackedLora.project`."""

    joint: Callable[[], torch.Tensor]  # the packed [W; A] matrix
    b: PackedWeight  # B, packed (block-diagonal for siblings)
    width: int  # the base outputs' columns; x A^T's follow
    mask_key: tuple  # (layout, dtype, siblings): StackedLora.direct_mask

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(rows, width) for x (rows, in); mask (rows, siblings x R)."""
        both = torch.ops.mkldnn._linear_pointwise(x, self.joint(), None, "none", [], "")
        return packed_linear(both[:, self.width:] * mask, self.b).add_(both[:, :self.width])


class StackedLora:
    fuse = True  # A into the base weight where the base layer is a plain nn.Linear
    siblings = True  # packed sibling layers as one SiblingStack

    def __init__(self, model: PeftModel):
        self.model, self.key = model, adapters_key(model)
        self.stacks: dict[int, Stack] = {}  # id(layer) → its stack
        self.masks: dict[tuple, torch.Tensor | None] | None = None  # (layout, dtype) → (rows, 1, R), while a forward runs
        self.direct_masks: dict[tuple, torch.Tensor | None] = {}  # DirectLora.mask_key → (rows, siblings x R), likewise
        self.layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
        self.sibling_stacks: dict[int, tuple[SiblingStack, int]] = {}  # id(layer) → its siblings' stack, its index
        with torch.inference_mode(False), torch.no_grad():  # built mid-batch: plain tensors, not inference ones
            for module in self.layers:
                if module.lora_A:
                    self.stacks[id(module)] = self.stack(module)
            if self.siblings:
                self.stack_siblings()
        for module in self.layers:
            # the layer's own forward, while rows() is active (instead of peft's: its argument checks and
            # adapter loop per layer per step cost 7% of a step even with every adapter off)
            module.forward = partial(self.layer_forward, module, type(module).forward.__get__(module))

    def stack(self, module) -> Stack:
        names = sorted(module.lora_A)
        layout, start = [], 0
        for name in names:
            rank = module.lora_A[name].weight.shape[0]
            layout.append((name, start, start + rank, float(module.scaling[name])))
            start += rank
        a = torch.cat([module.lora_A[name].weight for name in names])  # (R, in)
        b = torch.cat([module.lora_B[name].weight for name in names], dim=1).t().contiguous()  # (R, out)
        base = module.base_layer
        if not (self.fuse and type(base) is torch.nn.Linear):
            return Stack(tuple(layout), b, a.t().contiguous())
        # one matmul for the base output and x A^T: A's rows appended to the base weight, which becomes a view of
        # the joint matrix (no second copy; tied weights share the Parameter and see it too)
        weight = base.weight
        joint = torch.cat([weight.detach(), a.to(weight.dtype)])  # (out + R, in)
        weight.data = joint[: weight.shape[0]]
        b = b.to(weight.dtype)
        if not hasattr(base, "packed_weight"):  # models/packed_linear.py
            return Stack(tuple(layout), b, joint=joint)
        return Stack(tuple(layout), b, joint=joint, packed=PackedWeight(joint), b_packed=PackedWeight(b.t().contiguous()))

    def stack_siblings(self) -> None:
        """A SiblingStack for each packed group of base layers that are all LoRA layers stacked here, packed
        and fused, with the same adapters."""
        by_base = {id(module.base_layer): module for module in self.layers if id(module) in self.stacks}
        for module in self.layers:
            grouped = module.base_layer.__dict__.get("packed_group")  # models/packed_linear.py
            if grouped is None or grouped[1] != 0:
                continue
            siblings = [by_base.get(id(layer)) for layer in grouped[0].layers]
            stacks = [self.stacks[id(sibling)] for sibling in siblings if sibling is not None]
            if len(stacks) == len(siblings) and all(stack.packed is not None for stack in stacks) \
                    and len({(stack.layout, stack.b.shape[0]) for stack in stacks}) == 1:
                joint = SiblingStack(stacks)
                for index, sibling in enumerate(siblings):
                    self.sibling_stacks[id(sibling)] = (joint, index)

    def layer_forward(self, module, peft_forward, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.masks is None:
            return peft_forward(x, *args, **kwargs)
        return self.project(module, x)

    def project(self, module, x: torch.Tensor) -> torch.Tensor:
        """LoRA layer `module`'s output for x (rows, T, in) inside rows(): each row with its own adapter."""
        stack = self.stacks.get(id(module))
        mask = self.masks.get((stack.layout, stack.b.dtype)) if stack is not None else None
        if mask is None:
            return module.base_layer(x)
        if (sibling := self.sibling_stacks.get(id(module))) is not None and x.dtype == stack.b.dtype:
            joint, index = sibling
            key = (stack.layout, stack.b.dtype, len(joint.product.columns))
            if (repeated := self.masks.get(key)) is None:  # each sibling's columns of x A^T take the same mask
                repeated = self.masks[key] = mask.repeat(1, 1, len(joint.product.columns))
            return joint.output_of(index, x, repeated, module.base_layer.bias)
        if stack.joint is None:
            output = module.base_layer(x)
            lora = torch.matmul(x.to(stack.a.dtype), stack.a) * mask  # (rows, T, R)
            return output + torch.matmul(lora, stack.b).to(output.dtype)
        both = packed_linear(x, stack.packed) if stack.packed is not None else torch.nn.functional.linear(x, stack.joint)
        out = stack.b.shape[1]
        lora = both[..., out:] * mask  # (rows, T, R)
        lora = packed_linear(lora, stack.b_packed) if stack.b_packed is not None else torch.matmul(lora, stack.b)
        output = lora.add_(both[..., :out])
        return output if module.base_layer.bias is None else output.add_(module.base_layer.bias)

    def direct(self, modules: list) -> DirectLora | None:
        """The LoRA layers `modules` (siblings in their packed group's order, or one layer) as one DirectLora, or
        None where they are not all stacked, fused and packed without a bias."""
        stacks = [self.stacks.get(id(module)) for module in modules]
        if any(stack is None for stack in stacks) or any(module.base_layer.bias is not None for module in modules):
            return None
        if len(modules) == 1:
            stack = stacks[0]
            if stack.packed is None or stack.b_packed is None:
                return None
            return DirectLora(stack.packed.current, stack.b_packed, stack.b.shape[1], (stack.layout, stack.b.dtype, 1))
        siblings = [self.sibling_stacks.get(id(module)) for module in modules]
        if any(sibling is None for sibling in siblings) or len({id(joint) for joint, _ in siblings}) != 1 \
                or [index for _, index in siblings] != list(range(len(siblings[0][0].product.columns))):
            return None
        joint = siblings[0][0]
        return DirectLora(lambda: joint.packed, joint.b, joint.width, (joint.layout, stacks[0].b.dtype, len(modules)))

    def direct_mask(self, key: tuple) -> torch.Tensor | None:
        """Inside rows(): the (rows, siblings x R) mask of a DirectLora's key; None if no row uses its adapters."""
        if key not in self.direct_masks:
            layout, dtype, siblings = key
            mask = self.masks.get((layout, dtype))
            self.direct_masks[key] = None if mask is None else mask[:, 0].repeat(1, siblings)
        return self.direct_masks[key]

    @contextmanager
    def rows(self, adapters: list[str | None]):
        """Run the model inside this: row i gets adapters[i] (None = the base)."""
        masks = {}
        if any(adapters):
            for layout, dtype in {(stack.layout, stack.b.dtype) for stack in self.stacks.values()}:
                if (layout, dtype) not in masks:
                    mask, used = torch.zeros(len(adapters), 1, layout[-1][2], dtype=dtype), False
                    for name, start, stop, scaling in layout:
                        picked = [i for i, adapter in enumerate(adapters) if adapter == name]
                        if picked:
                            mask[picked, :, start:stop], used = scaling, True
                    masks[layout, dtype] = mask if used else None  # None: no row of this batch uses these adapters
        self.masks, self.direct_masks = masks, {}
        try:
            yield
        finally:
            self.masks = None

    def close(self) -> None:
        """Give the layers back their peft forward."""
        for module in self.layers:
            module.__dict__.pop("forward", None)
