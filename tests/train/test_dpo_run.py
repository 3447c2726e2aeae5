"""DPO through `tunesmith train` on a tiny local model: exact resume after SIGKILL, two gloo processes == one."""
import json
import signal
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.train.test_distributed import run_train
from tests.train.test_dpo import write_pairs
from tests.train.test_sft_run import cli
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.reference import REFERENCE_FILE


def logged(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_sigkill_mid_dpo_run_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    # all weights train, so the reference is precomputed: the resumed run must reuse the stored one
    config = tmp_path / "dpo.yaml"
    config.write_text("train: {method: dpo, weights: full}\ndpo: {beta: 0.2, sft_weight: 0.3}\n")
    common = [str(config), "--base", str(tiny_model_dir), "--data", str(write_pairs(tmp_path / "train.jsonl")),
              "--batch-size", "2", "--lr", "1e-3", "--max-steps", "120", "--save-every", "10", "--seed", "7"]
    reference = cli("train", *common, "--out", str(tmp_path / "ref"))
    interrupted = cli("train", *common, "--out", str(tmp_path / "killed"))
    deadline = time.time() + 180
    while latest_checkpoint(tmp_path / "killed") is None or latest_checkpoint(tmp_path / "killed").name < "step-000030":
        assert interrupted.poll() is None, interrupted.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (tmp_path / "killed" / "model").exists(), "the run must really have been interrupted"
    stored = (tmp_path / "killed" / REFERENCE_FILE).stat().st_mtime_ns
    resumed = cli("train", "--out", str(tmp_path / "killed"), "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    assert (tmp_path / "killed" / REFERENCE_FILE).stat().st_mtime_ns == stored  # reused, not recomputed
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    ref, killed = logged(tmp_path / "ref"), logged(tmp_path / "killed")
    assert sorted(killed) == sorted(ref) == list(range(5, 121, 5))
    for key in ("loss", "rewards/accuracy", "rewards/margin"):
        assert killed[120][key] == pytest.approx(ref[120][key], abs=1e-4)
    a = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert all(a[k].float().sub(b[k].float()).abs().max() < 1e-5 for k in a)


def test_two_gloo_processes_follow_the_single_process_dpo_curve(tiny_model_dir, tmp_path):
    args = ["--method", "dpo", "--base", str(tiny_model_dir), "--data", str(write_pairs(tmp_path / "train.jsonl")),
            "--batch-size", "4", "--lr", "5e-3", "--seed", "3", "--lora-r", "4", "--no-bf16", "--max-steps", "10"]
    run_train(*args, "--out", str(tmp_path / "one"), nproc=1)
    two = run_train(*args, "--out", str(tmp_path / "two"), nproc=2)
    assert "2 processes" in two.stderr
    one, two = logged(tmp_path / "one"), logged(tmp_path / "two")
    assert one.keys() == two.keys() == {5, 10}
    for step in one:
        for key in ("loss", "rewards/margin", "rewards/accuracy", "logps/chosen"):
            assert two[step][key] == pytest.approx(one[step][key], abs=1e-4), (step, key)
