"""LoRA adapters through peft: the default, cheap way to specialise a base model."""
from __future__ import annotations

import contextlib
import warnings
import weakref

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper

from tunesmith.config import ConfigError, LoraConfig

TUNER_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → its adapter layers


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
        use_rslora=config.rslora,
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


@contextlib.contextmanager
def adapters_switched_off(model):
    """The LoRA adapters off and on again for a forward without gradients: each adapter layer's own switch
    (`disable_adapters`, which its forward reads) over a list of them found once per model. peft's
    `disable_adapter_layers` / `enable_adapter_layers` do the same and more: they walk every module of the model
    and reset each adapter weight's requires_grad, which a reference forward under no_grad does not need
    (profile, demo step at batch 4 with kl_to_base: 35 ms of a ~570 ms step)."""
    layers = tuner_layers(model)
    before = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, was in zip(layers, before):
            layer._disable_adapters = was


def tuner_layers(model) -> list[torch.nn.Module]:
    """The modules peft switches off with its adapters (its `_enable_adapter_layers`: adapter layers and wrappers of
    trained modules such as modules_to_save), found once per model: adapters are not added while it trains."""
    known = TUNER_LAYERS.get(model)
    if known is None:
        known = TUNER_LAYERS[model] = [m for m in model.modules()
                                       if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]
    return known
