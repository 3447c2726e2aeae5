"""Early stopping: the run stops once its validation loss has not improved for `patience` validations, exports the
weights of its best validation (kept on disk), says so in run.json and the model card, and a resume changes nothing."""
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_sft_run import FACTS, run_config, write_chat_file
from tunesmith.config import load_config
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.loop import note_validation
from tunesmith.train.sft import train


def test_patience_counts_validations_since_the_best():
    state = TrainState(step=0, trained_tokens=0)
    seen = []
    for step, loss in enumerate([3.0, 2.0, 2.5, 1.5, 1.6, 1.5, 1.7], 1):
        state.step = step
        seen.append((note_validation(state, loss, patience=3), state.evals_since_best, state.stopped_early))
    assert seen == [(True, 0, False), (True, 0, False), (False, 1, False), (True, 0, False), (False, 1, False),
                    (False, 2, False), (False, 3, True)]  # equal to the best is no improvement
    assert (state.best_step, state.best_valid_loss) == (4, 1.5)


def test_a_run_stops_early_and_exports_its_best_weights(tiny_model_dir, tmp_path):
    # validation answers contradict the training answers: once the model learns the training ones, its loss rises
    wrong = [(name, symbol[::-1] + "x") for name, symbol in FACTS]
    config = run_config(tiny_model_dir, tmp_path, max_steps=40, eval_every=1, early_stopping_patience=2, save_every=50,
                        keep_checkpoints=1, lr=5e-2)
    config.data.valid = write_chat_file(tmp_path / "contradicting.jsonl", wrong)
    result = train(config)
    stopping = result.early_stopping
    assert result.stopped_by == "early_stopping" and result.finished and result.steps < 40
    assert stopping["stopped_at_step"] == result.steps and stopping["best_step"] == result.steps - 2
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {line["step"]: line["valid_loss"] for line in lines}
    assert stopping["best_valid_loss"] == min(losses.values()) == losses[stopping["best_step"]]
    best = result.run_dir / "checkpoints" / f"step-{stopping['best_step']:06d}"
    kept = load_file(str(best / "trainable.safetensors"))
    exported = load_file(str(result.run_dir / "adapter" / "adapter_model.safetensors"))
    assert len(exported) == len(kept) and all(
        torch.equal(exported[name], kept[f"base_model.model.{name.removeprefix('base_model.model.')}".replace(
            ".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")])
        for name in exported)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["stopped_by"] == "early_stopping" and record["early_stopping"]["best_step"] == stopping["best_step"]
    assert f"the weights of step {stopping['best_step']}" in (result.run_dir / "model" / "README.md").read_text()
    again = train(config, resume=True)  # a finished run: nothing trained, the same weights exported
    assert (again.steps, again.stopped_by) == (result.steps, "early_stopping")
    assert all(torch.equal(exported[name], tensor) for name, tensor in
               load_file(str(result.run_dir / "adapter" / "adapter_model.safetensors")).items())


def test_early_stopping_needs_a_validation_file():
    with pytest.raises(ValueError, match="set data.valid"):
        load_config(overrides={"train.early_stopping_patience": 2})
