from __future__ import annotations

import os
import tempfile

import pytest
import torch

from tunesmith.models.packed_linear import bf16_kernels
from tests.tiny import save_tiny_pair, tiny_model, tiny_tokenizer

# Tiny models gain nothing from threads, and OpenMP threads thrash when another process holds the cores.
torch.set_num_threads(1)

# CLI training and erasure audit to the default home: the tests' go to a directory of their own, never to
# ~/.tunesmith (set before any fixture, so servers and commands started in subprocesses inherit it too)
os.environ["TUNESMITH_HOME"] = tempfile.mkdtemp(prefix="tunesmith-test-home-")


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(params=[pytest.param(torch.bfloat16, marks=pytest.mark.skipif(not bf16_kernels(), reason="no bf16 oneDNN")),
                        torch.float32], ids=["bf16", "float32"])
def packed_dtype(request):
    """Each dtype whose weights models/packed_linear.py packs: bf16 (where oneDNN has its kernels) and float32."""
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A local HF directory (config, safetensors, tokenizer, chat template) usable as --base."""
    return save_tiny_pair(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def talkative_model(model):
    """The tiny model with larger random weights (it otherwise says "\\n" to every prompt), in float64
    so that left padding cannot flip a greedy argmax through rounding."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    return model.double()
