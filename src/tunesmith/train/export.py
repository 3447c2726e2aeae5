"""Write the run's artifacts: peft adapter and merged model that plain transformers loads."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tunesmith.train.forward import causal_lm_of
from tunesmith.train.parent import stack_adapters


def atomic_directory_write(target: Path, write) -> Path:
    staging = target.with_name(f".tmp-{target.name}")
    if staging.exists():
        shutil.rmtree(staging)
    write(staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def export_model(model, tokenizer, run_dir: Path, stack_on: Path | None = None) -> Path:
    """Save DIR/adapter (LoRA runs) and DIR/model (merged weights + tokenizer + chat template).

    Merging folds the adapter into the base weights in place; call this once, after training.
    `stack_on`: the parent adapter a stacked run trained on top of; DIR/adapter then holds both as one
    adapter over the shared base (parent.stack_adapters), while DIR/model merges both either way.
    """
    if hasattr(model, "peft_config"):
        def write_adapter(directory: Path) -> None:
            model.save_pretrained(directory)
            if stack_on is not None:
                stack_adapters(stack_on, directory)

        atomic_directory_write(run_dir / "adapter", write_adapter)
        model = model.merge_and_unload()
    merged = causal_lm_of(model)
    merged.config.use_cache = True
    if merged.generation_config is not None and tokenizer.eos_token_id is not None:
        merged.generation_config.eos_token_id = tokenizer.eos_token_id
        merged.generation_config.pad_token_id = tokenizer.pad_token_id

    def write(directory: Path) -> None:
        merged.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return atomic_directory_write(run_dir / "model", write)
