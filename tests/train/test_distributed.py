"""Two CPU processes over gloo follow the same loss curve as one; checkpoints move across world sizes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.test_sft_run import write_chat_file

REPO = Path(__file__).resolve().parents[2]


def run_train(*args, nproc=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", *args, "--nproc", str(nproc)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


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
