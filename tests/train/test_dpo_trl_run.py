"""A whole tunesmith LoRA DPO run and TRL's `DPOTrainer.train()` at the same settings end with the same adapter.

test_preference_loss.py checks one loss and its gradients; this checks everything around them that a
benchmark comparison relies on: LoRA initialisation from the same seed, packing, the per-pair mean, AdamW
(betas, eps, no weight decay), gradient clipping and the cosine schedule without warm-up, step after step.
Both sides train on the same tokens (TRL's dataset is replaced by tunesmith's rendering: TRL's own chat
rendering also trains the template's newline after <|im_end|>, which tunesmith does not) and one batch
holds every pair, so the order each side draws pairs in cannot matter. fp32: the comparison is exact math.
"""
import json

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from tests.train.test_dpo import pairs, write_pairs
from tests.train.test_preference_loss import trl_features
from tunesmith.config import load_config
from tunesmith.data.preference import render_pair
from tunesmith.train.recipes import train_run

SETTINGS = {"lr": 2e-2, "beta": 0.1, "steps": 3, "max_grad_norm": 0.05, "seed": 5, "r": 4, "alpha": 8, "max_length": 128}


def tunesmith_run(base, tmp_path):
    data = write_pairs(tmp_path / "train.jsonl")
    config = load_config(overrides={
        "model.base": str(base), "data.train": data, "data.max_length": SETTINGS["max_length"], "data.packing": True,
        "data.pii": "allow", "out": tmp_path / "run", "train.method": "dpo", "train.epochs": SETTINGS["steps"],
        "train.batch_size": len(pairs()), "train.lr": SETTINGS["lr"], "train.scheduler": "cosine",
        "train.warmup_ratio": 0.0, "train.weight_decay": 0.0, "train.max_grad_norm": SETTINGS["max_grad_norm"],
        "train.seed": SETTINGS["seed"], "train.bf16": False, "train.log_every": 1, "lora.r": SETTINGS["r"],
        "lora.alpha": SETTINGS["alpha"], "lora.dropout": 0.0, "lora.target_modules": "all-linear",
        "dpo.beta": SETTINGS["beta"], "dpo.loss": "sigmoid", "dpo.sft_weight": 0.0})
    train_run(config)
    return tmp_path / "run"


def trl_run(base, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(base)
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, num_train_epochs=SETTINGS["steps"],
        per_device_train_batch_size=len(pairs()), learning_rate=SETTINGS["lr"], lr_scheduler_type="cosine",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=SETTINGS["max_grad_norm"], seed=SETTINGS["seed"],
        max_length=SETTINGS["max_length"], beta=SETTINGS["beta"], loss_type=["sigmoid"], gradient_checkpointing=False,
        save_strategy="no", logging_steps=1, report_to=[],
    )
    rows = [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs()]
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), args=args,
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=LoraConfig(r=SETTINGS["r"], lora_alpha=SETTINGS["alpha"], lora_dropout=0.0,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    initial = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    rendered = [render_pair(tokenizer, p, SETTINGS["max_length"]) for p in pairs()]
    trainer.train_dataset = Dataset.from_list(trl_features([r.chosen for r in rendered] + [r.rejected for r in rendered]))
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return trainer.model, initial, logged


def adapter_weights(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lora_A / lora_B tensors keyed as the saved adapter names them (no adapter name, no base_model prefix)."""
    return {name.replace(".default", "").removeprefix("base_model.model."): t for name, t in named.items() if "lora_" in name}


def test_tunesmith_dpo_run_ends_with_trl_dpo_trainers_adapter(tiny_model_dir, tmp_path):
    run_dir = tunesmith_run(tiny_model_dir, tmp_path)
    trl_model, trl_initial, trl_logged = trl_run(tiny_model_dir, tmp_path)
    ours = {name.removeprefix("base_model.model."): t for name, t in load_file(str(run_dir / "adapter" / "adapter_model.safetensors")).items()}
    theirs = adapter_weights({name: p.detach() for name, p in trl_model.named_parameters()})
    start = adapter_weights(trl_initial)
    assert ours.keys() == theirs.keys() and len(ours) > 0
    moved = max((theirs[name] - start[name]).abs().max().item() for name in theirs)
    assert moved > SETTINGS["lr"] / 2  # both really trained (a zero-step comparison would pass trivially)

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and len(trl_logged) == 3
    for our_step, trl_step in zip(metrics, trl_logged):
        assert our_step["loss"] == pytest.approx(trl_step["loss"], abs=1e-5)
        assert our_step["grad_norm"] == pytest.approx(trl_step["grad_norm"], rel=1e-4)
        assert our_step["rewards/margin"] == pytest.approx(trl_step["rewards/margins"], abs=1e-5)
    assert max(m["grad_norm"] for m in metrics) > SETTINGS["max_grad_norm"]  # clipping was exercised
    assert metrics[1]["loss"] < metrics[0]["loss"]
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=0, msg=name)
