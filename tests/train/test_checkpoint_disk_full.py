"""The disk fills up in the middle of a checkpoint write (the run directory on a real 8 MiB tmpfs, filled as the
step-8 checkpoint starts): the run stops with the file system's 'No space left on device', the earlier checkpoint
is untouched, and once space returns the resume equals the uninterrupted run."""
import errno
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.disk import fill, small_disk
from tests.train.test_checkpoint_kill import losses, reference  # noqa: F401  (reference is a fixture)
from tests.train.test_sft_run import run_config
from tunesmith.train import checkpoint
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.sft import train


def test_a_disk_that_fills_during_a_checkpoint_write_loses_nothing_and_the_run_resumes(reference, tiny_model_dir,
                                                                                         tmp_path, monkeypatch):
    config = run_config(tiny_model_dir, tmp_path, max_steps=12, save_every=4, seed=5)
    with small_disk(config.out, "8m"):
        real_save_file, filled = checkpoint.save_file, []

        def save_file(tensors, path, *args, **kwargs):
            if ".tmp-step-000008" in str(path) and not filled:
                filled.append(fill(config.out))
            return real_save_file(tensors, path, *args, **kwargs)

        with monkeypatch.context() as patched:
            patched.setattr(checkpoint, "save_file", save_file)
            with pytest.raises(Exception) as failure:
                train(config)
        assert filled, "the disk must have filled during the step-8 checkpoint"
        assert isinstance(failure.value, OSError) and failure.value.errno == errno.ENOSPC or \
            "No space left on device" in str(failure.value), repr(failure.value)
        latest = latest_checkpoint(config.out)
        assert latest.name == "step-000004"  # the torn step-8 staging directory is not taken for a checkpoint
        kept = load_file(str(latest / "trainable.safetensors"))
        assert kept and all(torch.isfinite(t).all() for t in kept.values())

        filled[0].unlink()  # space returns
        train(config, resume=True)
        assert losses(config.out) == pytest.approx(losses(reference), abs=1e-5)
        expected = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
        resumed = load_file(str(config.out / "adapter" / "adapter_model.safetensors"))
        for name, tensor in expected.items():
            torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=0)
        assert not list(config.out.rglob(".tmp-*"))
        shutil.rmtree(config.out / "checkpoints")  # (the tmpfs is unmounted next)
