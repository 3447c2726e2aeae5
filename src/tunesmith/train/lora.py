"""LoRA adapters through peft: the default, cheap way to specialise a base model."""
from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from tunesmith.config import LoraConfig


def apply_lora(model, config: LoraConfig):
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)
