"""Classification over two gloo CPU processes (DDP and FSDP) follows the 1-process loss curve and exports the same
classifier."""
import pytest
import torch
import yaml

from tests.train.test_classify import ROWS, write_rows
from tests.train.test_distributed import losses, run_train
from tunesmith.models.classifier import load_classifier


@pytest.mark.slow  # four training processes per case: ~1 minute on 2 idle cores
@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_processes_follow_the_single_process_classification_run(tiny_model_dir, tmp_path, distributed):
    config = tmp_path / "classify.yaml"
    config.write_text(yaml.safe_dump({
        "train": {"method": "classification", "distributed": distributed},
        "classification": {"labels": ["metal", "animal"]},
        "data": {"pii": "allow"},
    }))
    # batch 5 of 24 rows, micro-batch 2: ranks get unequal shares, and FSDP's lockstep fillers run
    args = [str(config), "--base", str(tiny_model_dir), "--data", str(write_rows(tmp_path / "train.jsonl")),
            "--valid", str(write_rows(tmp_path / "valid.jsonl", repeat=1)), "--batch-size", "5", "--micro-batch-size",
            "2", "--lr", "1e-2", "--seed", "3", "--lora-r", "4", "--no-bf16", "--max-steps", "6", "--eval-every", "3"]
    run_train(*args, "--out", str(tmp_path / "one"), nproc=1)
    two = run_train(*args, "--out", str(tmp_path / "two"), nproc=2)
    assert f"2 processes ({distributed})" in two.stderr
    one_curve, two_curve = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one_curve.keys() == two_curve.keys() == {3, 5, 6}
    for step in one_curve:
        assert two_curve[step] == pytest.approx(one_curve[step], abs=1e-4)
    texts = [text for text, _ in ROWS]
    one, two_model = load_classifier(tmp_path / "one", bf16=False), load_classifier(tmp_path / "two", bf16=False)
    torch.testing.assert_close(two_model.scores(texts), one.scores(texts), atol=1e-4, rtol=0)
    assert one.thresholds == pytest.approx(two_model.thresholds, abs=1e-4)
