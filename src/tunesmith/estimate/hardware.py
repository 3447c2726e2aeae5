"""Hardware a run can be estimated for: this machine's CPU, or a named GPU from a table of peak figures.

Run as: tunesmith estimate examples/elements/demo.yaml --hardware h100
"""
from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 1024**3

# Achieved training FLOP/s per CPU core when no --probe is given: measured with `tunesmith estimate --probe`
# on examples/elements/demo.yaml (LoRA, SmolLM2-135M, bf16 autocast on AMX), 2-core Xeon, load average < 1.
# Other CPUs differ by several times; --probe measures the machine at hand instead.
CPU_FLOPS_PER_CORE = 100e9

# Fraction of peak dense bf16 FLOP/s a GPU run reaches (model FLOPs utilisation). An assumption, not a
# measurement: large models reach 35-50%; small models with short sequences often much less. --mfu overrides.
DEFAULT_GPU_MFU = 0.30

# CUDA context, cuBLAS workspaces and the caching allocator's reserve, on top of tensors (commonly ~0.5-1 GiB).
GPU_RUNTIME_BYTES = int(0.75 * GIB)


class HardwareError(ValueError):
    """The run cannot be estimated on the --hardware asked for; the message says what to pass instead."""


class UnknownHardwareError(HardwareError):
    """The --hardware name is not in the table; the message lists the names."""


@dataclass(frozen=True)
class Hardware:
    name: str
    kind: str  # "cpu" or "gpu"
    memory_bytes: int
    achieved_flops: float  # FLOP/s a training step reaches: peak × MFU on a GPU, calibrated on a CPU
    description: str
    peak_flops: float | None = None  # dense bf16 (fp16 on T4) tensor FLOP/s; None where unknown (CPU)
    mfu: float | None = None


@dataclass(frozen=True)
class GpuSpec:
    label: str
    peak_tflops: float  # dense, no structured sparsity
    memory_gib: float
    note: str


# Dense bf16 tensor-core peaks from NVIDIA's datasheets (the datasheets' headline numbers with sparsity are 2x):
# T4 datasheet (FP16 mixed precision 65 TFLOPS; no bf16 on Turing), L4 datasheet (bf16 242 sparse → 121),
# A10G: AWS's A10G is quoted at 70 bf16 TFLOPS dense (about half the A10's 125 — the least certain entry),
# A100 datasheet (312 bf16, 40 or 80 GB), H100 SXM datasheet (1979 sparse → 989, 80 GB),
# H200 SXM datasheet (same compute as H100, 141 GB).
GPUS: dict[str, GpuSpec] = {
    "t4": GpuSpec("NVIDIA T4", 65, 16, "fp16 peak: T4 has no bf16, so a run would use fp16 autocast"),
    "l4": GpuSpec("NVIDIA L4", 121, 24, ""),
    "a10g": GpuSpec("NVIDIA A10G", 70, 24, ""),
    "a100-40": GpuSpec("NVIDIA A100 40GB", 312, 40, ""),
    "a100-80": GpuSpec("NVIDIA A100 80GB", 312, 80, ""),
    "h100": GpuSpec("NVIDIA H100 SXM", 989, 80, ""),
    "h200": GpuSpec("NVIDIA H200 SXM", 989, 141, ""),
}


def hardware_names() -> list[str]:
    return ["cpu", *GPUS]


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_hardware(measured_flops: float | None = None) -> Hardware:
    """This machine; `measured_flops` comes from a probe, else the per-core figure above is scaled by cores."""
    cores = cpu_cores()
    achieved = measured_flops if measured_flops is not None else CPU_FLOPS_PER_CORE * cores
    source = "probed" if measured_flops is not None else f"default {CPU_FLOPS_PER_CORE / 1e9:.0f} GFLOP/s per core, not probed"
    return Hardware(
        name="cpu",
        kind="cpu",
        memory_bytes=total_memory_bytes(),
        achieved_flops=achieved,
        description=f"this CPU: {cores} cores, {total_memory_bytes() / GIB:.0f} GiB RAM, {achieved / 1e9:.0f} GFLOP/s ({source})",
    )


def gpu_hardware(name: str, mfu: float = DEFAULT_GPU_MFU) -> Hardware:
    spec = GPUS[name]
    peak = spec.peak_tflops * 1e12
    note = f"; {spec.note}" if spec.note else ""
    return Hardware(
        name=name,
        kind="gpu",
        memory_bytes=int(spec.memory_gib * GIB),
        achieved_flops=peak * mfu,
        peak_flops=peak,
        mfu=mfu,
        description=f"{spec.label}: {spec.memory_gib:g} GiB, {spec.peak_tflops:g} TFLOP/s dense peak × {mfu:.0%} MFU (assumed){note}",
    )


def lookup_hardware(name: str, mfu: float | None = None, measured_flops: float | None = None) -> Hardware:
    key = name.strip().lower().replace("_", "-")
    if key == "cpu":
        return cpu_hardware(measured_flops)
    if key not in GPUS:
        raise UnknownHardwareError(f"unknown hardware {name!r}; choose one of: {', '.join(hardware_names())}")
    return gpu_hardware(key, DEFAULT_GPU_MFU if mfu is None else mfu)
