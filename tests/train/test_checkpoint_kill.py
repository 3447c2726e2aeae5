"""A run killed inside a checkpoint write (before each file, with a file half-written, before the rename)
resumes from the previous checkpoint to exactly the uninterrupted run. The kill is a BaseException raised from
the write itself, which leaves on disk what SIGKILL at that instant would. Then 12 seeds each kill a run at a random
one of its 38 writes (checkpoint files, renames, deletions, metrics lines, run.json, exports; whole or torn) and its
resume at another: the final resume still equals the uninterrupted run."""
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


class RandomKill:
    """Kills (raises Killed) at the `at`-th write of a run: a checkpoint file, a rename, a deletion, a metrics line,
    any `Path.write_text` (state.json, run.json, the model card). `torn` writes half of it first, as SIGKILL in the
    middle of a write would leave it; a torn deletion removes one file of the tree. `at=None` only counts."""

    def __init__(self, at: int | None, torn: bool):
        self.at, self.torn, self.count, self.points = at, torn, 0, []

    def due(self, what: str) -> bool:
        self.count += 1
        self.points.append(what)
        return self.count - 1 == self.at

    def arm(self, patch) -> None:
        from pathlib import Path
        import shutil

        from tunesmith.train import metrics

        real_save_file, real_torch_save, real_replace = checkpoint.save_file, torch.save, checkpoint.os.replace
        real_rmtree, real_write_text, real_append = shutil.rmtree, Path.write_text, metrics.MetricsLog.write
        killer = self

        def torn_file(path) -> None:
            data = open(path, "rb").read()
            open(path, "wb").write(data[: len(data) // 2])

        def file_writer(real, label):
            def write(obj, path, *args, **kwargs):
                if not killer.due(f"{label} {Path(str(path)).name}"):
                    return real(obj, path, *args, **kwargs)
                if killer.torn:
                    real(obj, path, *args, **kwargs)
                    torn_file(path)
                raise Killed()
            return write

        def replace(source, target):
            if killer.due(f"rename {Path(str(source)).name}"):
                raise Killed()
            real_replace(source, target)

        def rmtree(path, *args, **kwargs):
            if killer.due(f"delete {Path(str(path)).name}"):
                if killer.torn:
                    first = sorted(p for p in Path(path).rglob("*") if p.is_file())[:1]
                    for file in first:
                        file.unlink()
                raise Killed()
            real_rmtree(path, *args, **kwargs)

        def write_text(self, data, *args, **kwargs):
            if killer.due(f"write {self.name}"):
                if killer.torn:
                    real_write_text(self, data[: len(data) // 2], *args, **kwargs)
                raise Killed()
            return real_write_text(self, data, *args, **kwargs)

        def append(self, record):
            if killer.due("metrics line"):
                if killer.torn:
                    with self.path.open("a") as handle:
                        handle.write(json.dumps(record)[:20])
                raise Killed()
            real_append(self, record)

        patch.setattr(checkpoint, "save_file", file_writer(real_save_file, "weights"))
        patch.setattr(torch, "save", file_writer(real_torch_save, "torch.save"))
        patch.setattr(checkpoint.os, "replace", replace)
        patch.setattr(shutil, "rmtree", rmtree)
        patch.setattr(Path, "write_text", write_text)
        patch.setattr(metrics.MetricsLog, "write", append)


@pytest.fixture(scope="module")
def writes_of_a_run(reference, tiny_model_dir, tmp_path_factory):
    """Every kill point of the uninterrupted run, in order (the random kills choose among them): 38 with 3
    checkpoints, the exports, run.json, the model card. After `reference`, as the weights' digest cache is then
    written already."""
    counter = RandomKill(at=None, torn=False)
    config = run_config(tiny_model_dir, tmp_path_factory.mktemp("count"), max_steps=12, save_every=4, seed=5)
    with pytest.MonkeyPatch.context() as patch:
        counter.arm(patch)
        train(config)
    assert sum(point.startswith("rename .tmp-step") for point in counter.points) == 3
    return counter.points


@pytest.mark.parametrize("seed", range(12))
def test_kills_at_random_writes_then_resumes_equal_the_uninterrupted_run(reference, writes_of_a_run, tiny_model_dir,
                                                                         tmp_path, seed):
    """Killed at a random write (whole or torn), killed again at a random write of the resume, then resumed to
    the end: the same losses for every step, each step once, the same weights, no staging directory left."""
    import random

    rng = random.Random(seed)
    config = run_config(tiny_model_dir, tmp_path, max_steps=12, save_every=4, seed=5)
    killed_at = []
    for attempt in range(2):
        killer = RandomKill(at=rng.randrange(len(writes_of_a_run)), torn=rng.random() < 0.5)
        with pytest.MonkeyPatch.context() as patch:
            killer.arm(patch)
            try:
                train(config, resume=attempt > 0)
            except Killed:
                killed_at.append((killer.points[-1], "torn" if killer.torn else "whole"))
    train(config, resume=True)
    assert killed_at, "the first run, at least, must have been killed"
    records = [json.loads(line) for line in (config.out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13)), killed_at
    assert [r["loss"] for r in records] == pytest.approx(losses(reference), abs=1e-5), killed_at
    expected = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(config.out / "adapter" / "adapter_model.safetensors"))
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=0, msg=lambda m: f"{killed_at}: {m}")
    assert not [p.name for p in config.out.rglob(".tmp-*")], killed_at
