"""FSDP over two gloo CPU processes follows the 1-process loss curve; its checkpoints move across world sizes."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_distributed import losses, real_tokens, run_train
from tests.train.test_sft_run import FACTS, write_chat_file


def fsdp_args(tiny_model_dir, tmp_path, method: str) -> list[str]:
    """A YAML selecting FSDP, then the same flags as the DDP tests; batch 3 of 10 examples, micro-batch 1:
    ranks get unequal shares (2/1, and 1/0 on each epoch's last step), so the lockstep fillers run."""
    config = tmp_path / "fsdp.yaml"
    config.write_text("train:\n  distributed: fsdp\n")
    data = write_chat_file(tmp_path / "train.jsonl")
    valid = write_chat_file(tmp_path / "valid.jsonl", FACTS[:3])
    return [str(config), "--base", str(tiny_model_dir), "--data", str(data), "--valid", str(valid),
            "--method", method, "--batch-size", "3", "--micro-batch-size", "1", "--lr", "5e-3", "--seed", "3",
            "--lora-r", "4", "--no-bf16", "--eval-every", "4"]


def exported_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_two_fsdp_processes_follow_the_single_process_loss_curve(tiny_model_dir, tmp_path, method):
    args = fsdp_args(tiny_model_dir, tmp_path, method) + ["--max-steps", "12"]
    run_train(*args, "--out", str(tmp_path / "one"), nproc=1)
    two = run_train(*args, "--out", str(tmp_path / "two"), nproc=2)
    assert "2 processes (fsdp)" in two.stderr
    one_curve, two_curve = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one_curve.keys() == two_curve.keys() == {4, 5, 8, 10, 12}
    for step in one_curve:
        assert two_curve[step] == pytest.approx(one_curve[step], abs=1e-4)
    assert real_tokens(tmp_path / "two") == real_tokens(tmp_path / "one")  # disjoint shares; fillers not counted
    # the export gathered every shard: the merged models agree
    one_model, two_model = exported_weights(tmp_path / "one"), exported_weights(tmp_path / "two")
    assert one_model.keys() == two_model.keys()
    for name, tensor in one_model.items():
        torch.testing.assert_close(two_model[name], tensor, atol=1e-5, rtol=0)
    assert (tmp_path / "two" / "adapter").is_dir() == (method == "lora")


@pytest.mark.parametrize("first,second,method", [(2, 1, "lora"), (1, 2, "lora"), (2, 1, "full"), (1, 2, "full")])
def test_fsdp_checkpoint_resumes_across_world_sizes(tiny_model_dir, tmp_path, first, second, method):
    args = fsdp_args(tiny_model_dir, tmp_path, method) + ["--max-steps", "8"]
    run_train(*args, "--out", str(tmp_path / "reference"))
    # stop the 8-step run after step 4 in one world size, then finish it in the other (same saved config)
    run_train(*args, "--save-every", "4", "--out", str(tmp_path / "moved"), "--stop-after", "4", nproc=first)
    resumed = run_train("--out", str(tmp_path / "moved"), "--resume", nproc=second)
    assert "resuming from" in resumed.stderr
    assert losses(tmp_path / "moved")[8] == pytest.approx(losses(tmp_path / "reference")[8], abs=1e-4)


def test_checkpoints_with_index_keyed_optimizer_state_still_resume(tokenizer, tmp_path):
    """Checkpoints written before name-keyed (strategy-independent) optimizer states load as before."""
    from tests.tiny import tiny_model
    from tests.train.test_loop import fact_examples, settings
    from tunesmith.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
    from tunesmith.train.loop import train_step
    from tunesmith.train.schedule import build_scheduler

    def setup():
        model = tiny_model(tokenizer, seed=1).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, optimizer, build_scheduler(optimizer, "linear", 0.0, 4)

    examples, s = fact_examples(tokenizer), settings(tokenizer, micro_batch_size=4)
    model, optimizer, scheduler = setup()
    train_step(model, optimizer, scheduler, examples, s)
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(1, 0), keep=2, strategy=s.strategy)
    saved = torch.load(path / "optim.pt", weights_only=False)
    torch.save({**saved, "optimizer": optimizer.state_dict()}, path / "optim.pt")  # the older, index-keyed form
    resumed, resumed_optimizer, resumed_scheduler = setup()
    load_checkpoint(path, resumed, resumed_optimizer, resumed_scheduler, s.strategy)
    train_step(model, optimizer, scheduler, examples, s)
    train_step(resumed, resumed_optimizer, resumed_scheduler, examples, s)
    for p, q in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(q, p, atol=0, rtol=0)
