"""Two CPU processes over gloo follow the same loss curve as one; checkpoints move across world sizes; DeepSpeed set-up."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.test_sft_run import write_chat_file

REPO = Path(__file__).resolve().parents[2]


def run_train(*args, nproc=1):
    # gloo on the CPU, also where there are GPUs (a machine with one GPU cannot give two processes one each)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", *args, "--nproc", str(nproc)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def real_tokens(run_dir: Path) -> dict[int, int]:
    """Tokens all ranks ran forward between records: equal to one process's only if the ranks' shares of
    each step are disjoint and cover it (the loss curve alone cannot tell: its normalisation is global)."""
    return {r["step"]: r["real_tokens"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "real_tokens" in r}


def common(tiny_model_dir, tmp_path):
    data = write_chat_file(tmp_path / "train.jsonl")
    return ["--base", str(tiny_model_dir), "--data", str(data), "--batch-size", "4", "--lr", "5e-3",
            "--seed", "3", "--lora-r", "4", "--no-bf16"]


def test_two_gloo_processes_follow_the_single_process_loss_curve(tiny_model_dir, tmp_path):
    args = common(tiny_model_dir, tmp_path) + ["--max-steps", "12"]
    run_train(*args, "--out", str(tmp_path / "one"), nproc=1)
    two = run_train(*args, "--out", str(tmp_path / "two"), nproc=2)
    assert "2 processes" in two.stderr
    one_curve, two_curve = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one_curve.keys() == two_curve.keys() == {5, 10, 12}
    for step in one_curve:
        assert two_curve[step] == pytest.approx(one_curve[step], abs=1e-4)
    assert real_tokens(tmp_path / "two") == real_tokens(tmp_path / "one")  # disjoint shares covering each step


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_checkpoint_resumes_across_world_sizes(tiny_model_dir, tmp_path, first, second):
    args = common(tiny_model_dir, tmp_path)
    run_train(*args, "--max-steps", "10", "--out", str(tmp_path / "reference"))
    # stop the 10-step run after step 5 in one world size, then finish it in the other
    run_train(*args, "--max-steps", "10", "--save-every", "5", "--out", str(tmp_path / "moved"),
                     "--stop-after", "5", nproc=first)
    resumed = run_train("--out", str(tmp_path / "moved"), "--resume", nproc=second)
    assert "resuming from" in resumed.stderr
    assert losses(tmp_path / "moved")[10] == pytest.approx(losses(tmp_path / "reference")[10], abs=1e-4)


# --- DeepSpeed: not installed here, so what is tested is that a run asking for it fails early and clearly


def deepspeed_run_config(tiny_model_dir, tmp_path, ds_config):
    from tunesmith.config import load_config

    return load_config(overrides={"model.base": str(tiny_model_dir), "out": tmp_path / "run",
                                  "data.train": write_chat_file(tmp_path / "train.jsonl"),
                                  "train.distributed": "deepspeed", "train.deepspeed_config": ds_config})


def test_deepspeed_without_a_config_file_is_a_config_error():
    from tunesmith.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="deepspeed_config is not set"):
        load_config(overrides={"train.distributed": "deepspeed"})


@pytest.mark.parametrize("installed,config_text,message", [
    (False, '{"zero_optimization": {"stage": 2}}', "pip install deepspeed"),
    (True, None, "not found"),
    (True, "{not json", "not valid JSON"),
])
def test_deepspeed_setup_errors_come_before_any_model_loading(tiny_model_dir, tmp_path, monkeypatch,
                                                              installed, config_text, message):
    import tunesmith.train.deepspeed as deepspeed
    import tunesmith.train.sft as sft

    ds_config = tmp_path / "ds.json"
    if config_text is not None:
        ds_config.write_text(config_text)
    monkeypatch.setattr(deepspeed.importlib.util, "find_spec", lambda name: object() if installed else None)
    for loader in ("load_tokenizer", "build_model", "init_world"):
        monkeypatch.setattr(sft, loader, lambda *a, **k: pytest.fail("loaded before the DeepSpeed check"))
    with pytest.raises(deepspeed.DeepSpeedSetupError, match=message):
        sft.train(deepspeed_run_config(tiny_model_dir, tmp_path, ds_config))
    assert not (tmp_path / "run").exists()


def test_cli_names_the_missing_deepspeed_package(tiny_model_dir, tmp_path):
    ds_config = tmp_path / "ds.json"
    ds_config.write_text('{"zero_optimization": {"stage": 3}}')
    config = tmp_path / "run.yaml"
    config.write_text(f"train:\n  distributed: deepspeed\n  deepspeed_config: {ds_config}\n")
    data = write_chat_file(tmp_path / "train.jsonl")
    result = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", str(config), "--base", str(tiny_model_dir),
                             "--data", str(data), "--out", str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "pip install deepspeed" in " ".join(result.stderr.split()) and "fsdp" in result.stderr


def test_deepspeed_config_takes_batch_geometry_and_clipping_from_the_run():
    from tunesmith.train.deepspeed import DeepSpeedSetupError, deepspeed_config

    user = {"zero_optimization": {"stage": 3}, "bf16": {"enabled": True}, "train_batch_size": "auto"}
    filled = deepspeed_config(user, batch_size=8, micro_batch_size=2, max_grad_norm=0.5, world_size=2)
    assert filled["train_micro_batch_size_per_gpu"] == 2 and filled["gradient_accumulation_steps"] == 2
    assert filled["train_batch_size"] == 8 and filled["gradient_clipping"] == 0.5
    assert filled["zero_optimization"] == {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}
    assert filled["bf16"] == {"enabled": True}
    with pytest.raises(DeepSpeedSetupError, match="train_batch_size=64"):
        deepspeed_config({"train_batch_size": 64}, batch_size=8, micro_batch_size=2, max_grad_norm=1.0, world_size=2)
    with pytest.raises(DeepSpeedSetupError, match="'optimizer' section"):
        deepspeed_config({"optimizer": {"type": "Adam"}}, batch_size=8, micro_batch_size=2, max_grad_norm=1.0, world_size=2)


class DeepSpeedEngine(torch.nn.Module):
    """The engine contract tunesmith relies on, as DeepSpeed documents it: backward divides the loss by the
    accumulation steps; at the boundary step() clips to gradient_clipping, steps and zeroes."""

    def __init__(self, module, optimizer, config):
        super().__init__()
        self.module, self.optimizer, self.config = module, optimizer, config
        self.device, self.boundary, self.norm = torch.device("cpu"), False, None

    def gradient_accumulation_steps(self):
        return self.config["gradient_accumulation_steps"]

    def set_gradient_accumulation_boundary(self, is_boundary):
        self.boundary = is_boundary

    def backward(self, loss):
        (loss / self.gradient_accumulation_steps()).backward()

    def step(self):
        assert self.boundary, "tunesmith steps the engine only at the end of an optimizer step"
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.norm = torch.nn.utils.clip_grad_norm_(params, self.config["gradient_clipping"])
        self.optimizer.step()
        self.optimizer.zero_grad()

    def get_global_grad_norm(self):
        return self.norm


def test_loop_drives_a_deepspeed_engine_to_the_same_update(tokenizer):
    from tests.train.test_loop import fact_examples, settings
    from tests.tiny import tiny_model
    from tunesmith.train.deepspeed import DeepSpeedStrategy, deepspeed_config
    from tunesmith.train.distributed import World
    from tunesmith.train.loop import train_step
    from tunesmith.train.schedule import build_scheduler

    def step(engine: bool):
        model = tiny_model(tokenizer, seed=1).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = build_scheduler(optimizer, "linear", 0.0, 4)
        s = settings(tokenizer, micro_batch_size=3, max_grad_norm=0.5)
        if engine:
            model = DeepSpeedEngine(model, optimizer, deepspeed_config({}, s.batch_size, 3, 0.5, world_size=1))
            s.strategy = DeepSpeedStrategy(World(strategy="deepspeed"), config={})
        result = train_step(model, optimizer, scheduler, fact_examples(tokenizer), s)
        return getattr(model, "module", model), result, scheduler.get_last_lr()[0]

    (plain, plain_result, plain_lr), (driven, driven_result, driven_lr) = step(False), step(True)
    assert driven_result.loss == pytest.approx(plain_result.loss, abs=1e-6)
    assert driven_result.grad_norm == pytest.approx(plain_result.grad_norm, rel=1e-5)
    assert driven_lr == plain_lr
    for p, q in zip(plain.parameters(), driven.parameters()):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0)
