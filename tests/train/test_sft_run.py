"""The real entry points on a tiny local model: files written, resume exact after SIGKILL, merge parity."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.config import load_config
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.sft import RunDirectoryInUse, train

FACTS = [("gold", "Au"), ("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("oxygen", "O"),
         ("iron", "Fe"), ("silver", "Ag"), ("copper", "Cu"), ("tin", "Sn"), ("lead", "Pb")]
REPO = Path(__file__).resolve().parents[2]


def write_chat_file(path: Path, facts=FACTS) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is the symbol for {n}?"},
                          {"role": "assistant", "content": f"The symbol for {n} is {s}."}]} for n, s in facts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_config(tiny_model_dir, tmp_path, **train):
    overrides = {"model.base": str(tiny_model_dir), "data.train": write_chat_file(tmp_path / "train.jsonl"),
                 "data.valid": write_chat_file(tmp_path / "valid.jsonl", FACTS[:3]), "out": tmp_path / "run",
                 "train.batch_size": 4, "train.lr": 1e-2, "train.log_every": 1, "lora.r": 4}
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_config(overrides=overrides)


def test_lora_run_writes_adapter_merged_model_metrics_and_config(tiny_model_dir, tmp_path):
    config = run_config(tiny_model_dir, tmp_path, epochs=2, save_every=2)
    result = train(config)
    run = tmp_path / "run"
    assert result.steps == 6  # 10 examples, batch 4 → 3 steps per epoch
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "model" / "config.json").is_file() and (run / "model" / "tokenizer.json").is_file()
    assert load_config(run / "config.yaml") == config  # the resolved config round-trips
    assert [c.name for c in sorted((run / "checkpoints").glob("step-*"))] == ["step-000004", "step-000006"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and "valid_loss" in lines[-1]
    assert all(0 <= line["token_accuracy"] <= 1 for line in lines) and 0 <= lines[-1]["valid_token_accuracy"] <= 1
    record = json.loads((run / "run.json").read_text())
    assert len(record["train_sha256"]) == 64 and record["trainable_parameters"] > 0
    # plain transformers, no tunesmith: loads and generates
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_existing_run_directory_is_not_overwritten(tiny_model_dir, tmp_path):
    config = run_config(tiny_model_dir, tmp_path, max_steps=1)
    train(config)
    with pytest.raises(RunDirectoryInUse, match="--resume"):
        train(config)


def test_merged_model_logits_match_the_in_memory_finetuned_model(tiny_model_dir, tmp_path):
    from tunesmith.train.export import export_model
    from tunesmith.train.lora import apply_lora
    from tunesmith.config import LoraConfig

    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, alpha=8))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():  # make the adapter non-trivial (lora_B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = torch.tensor([tokenizer("What is the symbol for gold?")["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    assert (expected - base).abs().max() > 1e-2  # the adapter changes the output
    export_model(model, tokenizer, tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - expected).abs().max() < 1e-3


def cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunesmith.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def final_loss(run_dir: Path) -> float:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(5, 201, 5))  # every 5th step once: no gap, no duplicate
    return lines[-1]["loss"]


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    data = write_chat_file(tmp_path / "train.jsonl")
    common = ["train", "--base", str(tiny_model_dir), "--data", str(data), "--batch-size", "2", "--lr", "5e-3",
              "--max-steps", "200", "--save-every", "10", "--seed", "7", "--lora-r", "4"]
    reference = cli(*common, "--out", str(tmp_path / "ref"))
    interrupted = cli(*common, "--out", str(tmp_path / "killed"))
    deadline = time.time() + 120
    while latest_checkpoint(tmp_path / "killed") is None or latest_checkpoint(tmp_path / "killed").name < "step-000030":
        assert interrupted.poll() is None, interrupted.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    killed_at = latest_checkpoint(tmp_path / "killed").name
    assert not (tmp_path / "killed" / "model").exists(), "the run must really have been interrupted"
    resumed = cli("train", "--out", str(tmp_path / "killed"), "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"resuming from" in output and killed_at in output
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    assert final_loss(tmp_path / "killed") == pytest.approx(final_loss(tmp_path / "ref"), abs=1e-4)
    from safetensors.torch import load_file
    a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resuming_a_finished_run_trains_nothing_and_reports_its_final_losses(tiny_model_dir, tmp_path):
    first = train(run_config(tiny_model_dir, tmp_path, max_steps=3))
    # `tunesmith train --resume` on it crashed printing a None loss
    again = train(run_config(tiny_model_dir, tmp_path, max_steps=3), resume=True)
    assert (again.steps, again.final_loss, again.final_valid_loss) == (3, first.final_loss, first.final_valid_loss)
    assert again.final_loss is not None
