"""The model a classification run trains: the base model's body under a fresh linear head, LoRA or whole.

transformers' `AutoModelForSequenceClassification` builds the architecture from the base model's own
directory (the embedded GGUF's dequantized copy, a local directory, a run's merged model): the decoder
keeps the base weights, `score` — a (labels × hidden) linear map of the last real token's hidden state —
starts random. With LoRA the body gets adapters and the head trains whole (peft `modules_to_save`), so the
exported model is the base plus a merged adapter plus the head.

Its config names the tokenizer's pad id: transformers pools each row at its last non-pad token.

`classification.layers` keeps only the first N decoder layers (the rest are not loaded): a classifier needs
features of the text, not the top layers that shape the next token. Measured on examples/moderation
(benchmarks/classifier_choice.py, 480 training rows, same settings; the table is in classify.py): 8 of
SmolLM2-135M's 30 layers separate harmful from harmless as well as all 30 (AUROC 0.950 vs 0.954) in about a
fifth of the training time and serve about five times as many texts per second.
"""
from __future__ import annotations

import torch
from peft import LoraConfig as PeftLoraConfig
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from tunesmith.config import ConfigError, RunConfig
from tunesmith.models.resolve import NO_HUB_KERNELS, resolve_model_dir
from tunesmith.train.lora import check_target_modules, peft_model

HEAD = "score"  # the classification head of transformers' decoder ...ForSequenceClassification models


def load_classification_tokenizer(base: str) -> PreTrainedTokenizerBase:
    """The base model's tokenizer with a pad token (its EOS when it has none); no chat template needed."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(base))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_classification_model(config: RunConfig, labels: list[str], multi_label: bool, pad_id: int):
    """A ...ForSequenceClassification over `config.model.base` with one output per label, LoRA-wrapped or whole."""
    directory = resolve_model_dir(config.model.base)
    model_config = AutoConfig.from_pretrained(
        directory,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        pad_token_id=pad_id,
    )
    keep_first_layers(model_config, config.classification.layers)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report lists `score` as new and dropped layers as unused
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, config=model_config, attn_implementation=config.model.attn_implementation, dtype=torch.float32,
            **NO_HUB_KERNELS)
    finally:
        transformers_logging.set_verbosity(verbosity)
    model.config.use_cache = False
    if config.train.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not config.train.uses_lora:
        return model
    check_target_modules(model, config.lora.target_modules)
    return peft_model(model, PeftLoraConfig(
        r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout, use_rslora=config.lora.rslora,
        target_modules=config.lora.target_modules, task_type="SEQ_CLS", modules_to_save=[HEAD],
    ))


def keep_first_layers(model_config, layers: int | None) -> None:
    """Cut the config to its first `layers` decoder layers (None: keep all); more than the base has is an error."""
    if layers is None:
        return
    available = model_config.num_hidden_layers
    if layers > available:
        raise ConfigError(f"classification.layers: {layers} but the base model has {available} decoder layers — "
                          f"use at most {available}, or leave it unset for all")
    model_config.num_hidden_layers = layers
    if getattr(model_config, "layer_types", None) is not None:  # per-layer attention kinds (Qwen2, Gemma)
        model_config.layer_types = model_config.layer_types[:layers]
