"""`train.compile`: each decoder layer through `torch.compile` (inductor), compiled at the first step.

Why: at small batches a LoRA step on the CPU is mostly fixed cost. The demo's step (4 examples, ~180 tokens)
runs ~30,000 small ATen ops (norms, rotary, casts, residual adds, peft's LoRA plumbing and each one's autograd
node), and their dispatch outweighs the products: by step time against batch size, ~0.34 s of the 0.53 s step
is fixed. Inductor fuses the elementwise ops into generated C++ kernels and keeps the products on oneDNN.
Measured (SmolLM2-135M, the demo's data and LoRA, bf16, 2 threads, Intel Xeon with AMX, mean of steps 11-80;
benchmarks/README.md): batch 4: 0.525 → 0.368 s a step; batch 16: 1.19 → 0.89 s. Compiling takes 30-45 s inside
the first step (torch's FX graph cache in its temporary directory makes a later run's faster).

Per layer, not the whole model: the layers share the compiled code (their weights are the graph's inputs), so
compile time does not grow with depth, and shapes are dynamic, so packed rows of every width reuse one graph
(the first layer, whose input needs no gradients, and the base model's reference forward without gradients each
compile once more; validation runs eager, train/loop.py). Dynamo specialises a row count of 1, so a batch of one
row would compile the layers again: where every micro-batch of a run's first step has two rows or more, a batch of
one row (an epoch's short last step) gets a row of padding instead (`row_floor`; the demo's last step, 4 new
examples and 4 replayed chunks in one row, compiled for 41 s on the AMD EPYC before).

Numerics: a fused kernel rounds once where eager bf16 rounds after each op, so a compiled run's losses differ
from an eager run's within bf16 rounding, as any change of kernels moves a run (tests/train/test_compiled_layers.py).
A process compiles afresh or takes kernels from torch's cache, and the two need not round alike: the demo's seed 42
scored 84.6% trained with a warm cache and 85.1% with an empty one. So a resumed compiled run continues from the
checkpoint's exact state but may round differently after it (the SIGKILL tests check exact resume eager).

Where it is not tested it is refused (methods other than supervised finetuning) or not applied, with a notice
(several processes: DDP, FSDP and DeepSpeed wrap the layers themselves). On the CPU inductor needs a C++ compiler
(g++ or clang++, or $CXX); without one the run is refused before the model loads.
"""
from __future__ import annotations

import torch

from tunesmith.config import ConfigError
from tunesmith.train.forward import causal_lm_of
from tunesmith.train.loop import LoopSettings, local_batches, step_examples


class CompileUnavailable(ConfigError):
    """train.compile asked for what this machine or run cannot do (a config error: the CLI and the server say it as one)."""


def applies(processes: int) -> bool:
    """Several processes train with eager layers (a notice says so): compiled layers are tested in one process only."""
    return processes == 1


NOT_APPLIED = "train.compile: not applied with {processes} processes (compiled layers are tested in one process only)"


def check_compiler(device: torch.device | str) -> None:
    """Refuse train.compile before the model loads on a CPU without a C++ compiler, which inductor needs there."""
    if torch.device(device).type == "cpu":
        from torch._inductor import exc
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except exc.InvalidCxxCompiler:
            raise CompileUnavailable("train.compile: torch.compile on the CPU needs a C++ compiler and none was found — "
                                     "install g++ (Debian/Ubuntu: apt install g++), point $CXX at one, "
                                     "or set train.compile: false (--no-compile)") from None


def decoder_layers(model) -> torch.nn.ModuleList:
    layers = getattr(causal_lm_of(model).get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise CompileUnavailable(f"train.compile: {type(causal_lm_of(model)).__name__} has no decoder layer list to compile — "
                                 "set train.compile: false")
    return layers


def compile_decoder_layers(model) -> int:
    """Each decoder layer compiled in place (`nn.Module.compile`: its parameters and state-dict names stay as they
    are); the compiling happens at the layers' first call. Returns how many.

    The first layer's input does not require gradients (the embeddings are frozen under LoRA) and the others' do,
    so dynamo compiles it a training graph of its own. Making that input require gradients too would share one
    graph and save 15 s of a cold first step (demo config: 49.7 → 34.1 s), but it changes how the first layer's
    backward rounds in bf16, and the demo trained with it scored 80.5% and 70.2% held-out at seeds 42 and 7
    against 85.1% and 85.8% without it (the same seeds, 2026-12-06; float32 gradients agree to 1e-6 either way).
    Not done: the demo's recipe is tuned on these kernels."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def row_floor(train_examples: list, settings: LoopSettings) -> int:
    """The run's settings.min_rows with compiled layers: 2 where every micro-batch of the first step has two rows or
    more (a later batch of one row is padded to the graph those compiled for), else 1 (the first step compiles a
    graph for one row anyway, and a run whose every step ends in a small micro-batch would pay for padding at each)."""
    batches = local_batches(step_examples(0, train_examples, settings), settings.strategy, settings.micro_batch_size)
    return 2 if all(settings.objective.collate(chunk, settings).rows >= 2 for chunk, _ in batches) else 1


def compiled(layer: torch.nn.Module) -> bool:
    return getattr(layer, "_compiled_call_impl", None) is not None
