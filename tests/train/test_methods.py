"""Full finetune and continued pretraining on raw text through the real recipe, on a tiny model."""
import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.train.sft import train

TEXT = """Hydrogen is the lightest element. It was discovered by Henry Cavendish in 1776.

Helium is a colourless, odourless gas. It was discovered in the solar spectrum in 1868.

Lithium is a soft silvery metal and the first member of group 1.
"""


def test_full_finetune_updates_every_weight_and_exports_a_plain_model(tiny_model_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "Symbol of gold?", "output": "Au."}) + "\n")
    config = load_config(overrides={"model.base": str(tiny_model_dir), "data.train": data, "out": tmp_path / "run",
                                    "train.method": "full", "train.max_steps": 3, "train.lr": 1e-2})
    result = train(config)
    assert not (tmp_path / "run" / "adapter").exists()
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").state_dict()
    assert result.steps == 3
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert len(changed) == len(base)


def test_continued_pretraining_on_raw_text_trains_every_token(tiny_model_dir, tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text(TEXT)
    config = load_config(overrides={"model.base": str(tiny_model_dir), "data.train": data, "out": tmp_path / "run",
                                    "train.max_steps": 20, "train.lr": 1e-2, "train.batch_size": 3,
                                    "train.log_every": 1})
    result = train(config)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 3 documents, every token but each document's first is a target
    from tunesmith.models.load import load_tokenizer
    tokenizer = load_tokenizer(str(tiny_model_dir))
    expected = sum(len(tokenizer(p)["input_ids"]) + 1 - 1 for p in TEXT.strip().split("\n\n"))
    assert lines[0]["trained_tokens"] == expected
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert record["method"] == "lora" and result.steps == 20


def test_prompt_completion_rows_train_only_their_completion_tokens(tiny_model_dir, tmp_path):
    from tunesmith.models.load import load_tokenizer

    rows = [{"prompt": [{"role": "user", "content": "Gold?"}, {"role": "assistant", "content": "Au."},
                        {"role": "user", "content": "Iron?"}], "completion": [{"role": "assistant", "content": "Fe."}]},
            {"conversations": [{"from": "human", "value": "Tin?"}, {"from": "gpt", "value": "Sn."}]}]
    for index, row in enumerate(rows):
        data = tmp_path / f"train{index}.jsonl"
        data.write_text(json.dumps(row) + "\n")
        config = load_config(overrides={"model.base": str(tiny_model_dir), "data.train": data,
                                        "out": tmp_path / f"run{index}", "train.max_steps": 1, "train.log_every": 1})
        assert train(config).steps == 1
        first = json.loads((tmp_path / f"run{index}" / "metrics.jsonl").read_text().splitlines()[0])
        answer = "Fe." if index == 0 else "Sn."
        tokenizer = load_tokenizer(str(tiny_model_dir))
        assert first["trained_tokens"] == len(tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"])
