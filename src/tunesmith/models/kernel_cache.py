"""oneDNN's cache of compiled CPU kernels, sized for the many shapes training, evaluation and serving meet.

PyTorch runs bf16 matrix products on the CPU through oneDNN, which compiles a kernel for each problem shape and
keeps the last 1024 (its ONEDNN_PRIMITIVE_CACHE_CAPACITY). Packed training rows change width every step (the demo's
~100-150 tokens), and each width needs its own kernels for every linear and LoRA product, forward and backward:
past 1024 the cache evicts and compiles again, and more often as a run meets more widths. Measured on the demo
(Intel Xeon, 2 threads): a step took 0.52-0.54 s at the start and 0.62-0.64 s after 500-600 steps (two runs);
over the whole run tokens/s fell from 335 to 265, while a fresh process resumed at step 1200 ran at 345. With
16384 kernels kept, 500 steps stayed flat (0.56-0.59 s) at the same peak RSS.

oneDNN reads the variable when it first needs its cache, so setting it when tunesmith is imported works as long as
no bf16 product ran before; a value the user set is kept.
"""
from __future__ import annotations

import os

CAPACITY = 16384


def keep_compiled_kernels() -> None:
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(CAPACITY))
