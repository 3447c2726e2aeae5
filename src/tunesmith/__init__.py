from __future__ import annotations

from tunesmith.models.kernel_cache import keep_compiled_kernels

__version__ = "0.1.0"

keep_compiled_kernels()  # before any bf16 product: oneDNN reads it once (models/kernel_cache.py)
