"""The recipe on the real embedded SmolLM2-135M-Instruct: a few steps, loss falls, artifacts load."""
import json
from pathlib import Path

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.train.sft import train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "elements"


@pytest.mark.slow
def test_lora_steps_on_the_embedded_model_lower_validation_loss(tmp_path):
    rows = (EXAMPLES / "train.jsonl").read_text().splitlines()[:96]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(rows) + "\n")
    valid = tmp_path / "valid.jsonl"
    valid.write_text("\n".join(rows[:8]) + "\n")
    torch.set_num_threads(2)
    try:
        config = load_config(overrides={"data.train": data, "data.valid": valid, "out": tmp_path / "run",
                                        "train.max_steps": 4, "train.batch_size": 16, "train.lr": 1e-3,
                                        "train.eval_every": 2, "data.max_length": 256})
        result = train(config)
    finally:
        torch.set_num_threads(1)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid_losses = [r["valid_loss"] for r in lines if "valid_loss" in r]
    assert len(valid_losses) == 2 and valid_losses[-1] < valid_losses[0]
    assert result.steps == 4 and lines[-1]["tokens_per_s"] > 0
    from tunesmith.cli import load_for_generation
    from tunesmith.models.generate import stream_chat

    model, tokenizer = load_for_generation(str(tmp_path / "run"))
    answer = "".join(stream_chat(model, tokenizer, [{"role": "user", "content": "What is the chemical symbol for gold?"}], 16))
    assert answer.strip()
