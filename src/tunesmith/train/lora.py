"""LoRA adapters through peft: the default, cheap way to specialise a base model."""
from __future__ import annotations

import contextlib
import warnings

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from tunesmith.config import ConfigError, LoraConfig


def check_target_modules(model, target_modules: list[str] | str) -> None:
    """Refuse, as a config error, a target list that names no module of the model (peft would stop with a traceback).

    A name matches a module whose dotted name is it or ends in `.name`, as peft matches them.
    """
    if target_modules == "all-linear":
        return
    names = [name for name, _ in model.named_modules()]
    if any(name == wanted or name.endswith("." + wanted) for wanted in target_modules for name in names):
        return
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear)})
    raise ConfigError(f"lora.target_modules: none of {list(target_modules)} is a module of this model — "
                      f"use all-linear or some of: {', '.join(linear)}")


def apply_lora(model, config: LoraConfig):
    check_target_modules(model, config.target_modules)
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    return peft_model(model, peft_config)


def peft_model(model, peft_config: PeftLoraConfig):
    with peft_deprecation_silenced():
        return get_peft_model(model, peft_config)


PEFT_DEPRECATION = "`is_gradient_checkpointing` is deprecated"  # transformers 5's, raised by peft 0.21's reads


@contextlib.contextmanager
def peft_deprecation_silenced():
    """Without the FutureWarning peft 0.21 triggers whenever it wraps a model, by reading transformers 5's
    deprecated `is_gradient_checkpointing`: nothing a user could act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        yield


def ignore_peft_deprecation() -> None:
    """The same, for the rest of the process: for the server, which wraps models in passing threads while
    other threads run (`catch_warnings` saves and restores process-wide filters: not safe across threads)."""
    warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
