"""A run killed inside a checkpoint write (before each file, with a file half-written, before the rename)
resumes from the previous checkpoint to exactly the uninterrupted run. The kill is a BaseException raised from
the write itself, which leaves on disk what SIGKILL at that instant would."""
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_sft_run import run_config
from tunesmith.train import checkpoint
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.sft import train

KILLED_SAVE = ".tmp-step-000008"  # the second of the checkpoints at steps 4, 8, 12


class Killed(BaseException):
    """Not an Exception: nothing in the run may catch it, as nothing catches SIGKILL."""


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference")
    config = run_config(tiny_model_dir, directory, max_steps=12, save_every=4, seed=5)
    train(config)
    return config.out


def kill_at(monkeypatch, point: str) -> None:
    """Arm the kill at `point` of the step-8 save: before/torn weights, before optimizer, torn rng, before rename."""
    real_save_file, real_torch_save, real_replace = checkpoint.save_file, torch.save, checkpoint.os.replace

    def torn(path) -> None:
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])

    def save_file(tensors, path, *args, **kwargs):
        if KILLED_SAVE in str(path) and point == "before weights":
            raise Killed()
        real_save_file(tensors, path, *args, **kwargs)
        if KILLED_SAVE in str(path) and point == "torn weights":
            torn(path)
            raise Killed()

    def torch_save(obj, path, *args, **kwargs):
        if KILLED_SAVE in str(path) and point == "before optimizer" and str(path).endswith("optim.pt"):
            raise Killed()
        real_torch_save(obj, path, *args, **kwargs)
        if KILLED_SAVE in str(path) and point == "torn rng" and str(path).endswith("rng.pt"):
            torn(path)
            raise Killed()

    def replace(source, target):
        if KILLED_SAVE in str(source) and point == "before rename":
            raise Killed()
        real_replace(source, target)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    monkeypatch.setattr(torch, "save", torch_save)
    monkeypatch.setattr(checkpoint.os, "replace", replace)


@pytest.mark.parametrize("point", ["before weights", "torn weights", "before optimizer", "torn rng", "before rename"])
def test_a_kill_inside_a_checkpoint_write_resumes_to_the_uninterrupted_run(reference, tiny_model_dir, tmp_path,
                                                                           monkeypatch, point):
    config = run_config(tiny_model_dir, tmp_path, max_steps=12, save_every=4, seed=5)
    with monkeypatch.context() as patched:
        kill_at(patched, point)
        with pytest.raises(Killed):
            train(config)
    assert latest_checkpoint(config.out).name == "step-000004"  # the half-written one is not taken for complete
    assert (config.out / "checkpoints" / KILLED_SAVE).is_dir() and not (config.out / "model").exists()
    train(config, resume=True)
    assert losses(config.out)[-1] == pytest.approx(losses(reference)[-1], abs=1e-5)
    assert sorted(p.name for p in (config.out / "checkpoints").iterdir()) == sorted(
        p.name for p in (reference / "checkpoints").iterdir())  # the staging directory did not outlive the resume
    expected = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(config.out / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=0)
