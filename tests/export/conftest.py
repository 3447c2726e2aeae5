"""A finished tiny LoRA run that has learnt its answers and to end them with <|im_end|>: what export reads."""
import json

import pytest
import torch

from tests.tiny import tiny_model, tiny_tokenizer
from tunesmith.config import load_config
from tunesmith.train.sft import train

FACTS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("tin", "Sn"), ("lead", "Pb"), ("copper", "Cu")]
PROMPTS = [f"Symbol for {name}?" for name, _ in FACTS]


@pytest.fixture(scope="session")
def export_base(tmp_path_factory):
    """The tiny llama with weights of std 0.1 (at 0.02 its logits are near uniform and LoRA barely moves)."""
    directory = tmp_path_factory.mktemp("export-base")
    tokenizer, model = tiny_tokenizer(), tiny_model(tiny_tokenizer(), seed=3)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.1)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, export_base):
    root = tmp_path_factory.mktemp("export-run")
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {name}?"},
                          {"role": "assistant", "content": f"{symbol}."}]} for name, symbol in FACTS]
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = load_config(overrides={"model.base": str(export_base), "data.train": root / "train.jsonl",
                                    "out": root / "run", "train.max_steps": 60, "train.batch_size": 6,
                                    "train.bf16": False, "train.lr": 2e-2, "lora.r": 8, "lora.alpha": 16,
                                    "train.log_every": 60})
    train(config)
    return root / "run"
