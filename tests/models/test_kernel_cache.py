"""Importing tunesmith keeps more of oneDNN's compiled kernels than its default 1024 (models/kernel_cache.py)."""
import os
import subprocess
import sys

import pytest

# 1100 products of distinct shapes, twice: the second round finds each kernel cached only if more than 1024 are kept
PRODUCTS = """
import sys, torch
if sys.argv[1] == "tunesmith":
    import tunesmith
weight = torch.randn(64, 64, dtype=torch.bfloat16)
for round in range(2):
    print("ROUND", round, flush=True)
    for rows in range(1, 1101):
        torch.mm(torch.randn(rows, 64, dtype=torch.bfloat16), weight)
"""


def second_round(imports: str) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}  # this process set it
    out = subprocess.run([sys.executable, "-c", PRODUCTS, imports], env={**env, "ONEDNN_VERBOSE": "all"},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    second = out.split("ROUND 1", 1)[1]
    return second.count("create:cache_miss"), second.count("create:cache_hit")


def test_importing_tunesmith_keeps_every_kernel_of_1100_shapes():
    misses, hits = second_round("torch only")
    if misses + hits == 0:
        pytest.skip("bf16 products do not go through oneDNN on this CPU")
    assert misses > 1000  # oneDNN's default keeps 1024: the first shapes were evicted, and are compiled again
    assert second_round("tunesmith") == (0, misses + hits)
