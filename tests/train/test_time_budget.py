"""train.time_budget: the run's total is decided once from the measured pace (a fake clock here), the schedule
ends exactly there, and a run resumed after the decision equals the uninterrupted one."""
import json

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.train.fake_clock import FakeClock, decide_on_rank
from tests.train.test_sft_run import run_config, write_chat_file
from tunesmith.cli import app
from tunesmith.train import time_budget
from tunesmith.train.sft import train
from tunesmith.train.time_budget import MEASURED_STEPS, TimeBudget, steps_within_budget


def test_steps_within_budget():
    assert steps_within_budget(30, 16, 2.0, done=4, cap=30) == 11  # 14 s left: 7 more steps
    assert steps_within_budget(600, 16, 2.0, done=4, cap=30) == 30  # the budget holds every step: epochs decide
    assert steps_within_budget(30, 40, 2.0, done=4, cap=30) == 4  # already over budget: stop now
    assert steps_within_budget(30, 16, 0.0, done=4, cap=30) == 30


def test_the_pace_leaves_out_the_first_step_and_the_decision_comes_once():
    budget = TimeBudget(0.5, clock=FakeClock(first=10, pace=2))
    decisions = [budget.observe(step, cap=30) for step in range(1, MEASURED_STEPS + 2)]
    assert decisions[:-1] == [None] * MEASURED_STEPS
    decision = decisions[-1]
    assert decision["seconds_per_step"] == 2.0 and decision["elapsed_s"] == 16.0  # not (16 - 0) / 4
    assert decision["total_steps"] == 11 and decision["limited_by"] == "time_budget"
    assert decision["measured_steps"] == [2, 4] and decision["decided_at_step"] == 4


def test_two_processes_with_different_paces_decide_the_same_total(tmp_path):
    mp.spawn(decide_on_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    first, second = (json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1))
    assert first == second  # rank 0 alone would take 11 steps at 2 s/step
    assert first["seconds_per_step"] == 3.0 and first["elapsed_s"] == 19.0 and first["total_steps"] == 7


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def budget_config(tiny_model_dir, tmp_path, **train):
    tmp_path.mkdir(exist_ok=True)
    # 10 examples, batch 4: 3 steps per epoch, so 10 epochs are 30 steps; 0.5 min at 2 s/step after 16 s: 11 steps
    settings = {"epochs": 10, "time_budget": 0.5, "warmup_ratio": 0.2, "save_every": 3, "scheduler": "cosine", **train}
    return run_config(tiny_model_dir, tmp_path, **settings)


def test_the_budget_cuts_the_run_and_the_schedule_ends_at_its_last_step(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=10, pace=2))
    result = train(budget_config(tiny_model_dir, tmp_path))
    assert result.finished and result.steps == 11 and result.stopped_by == "time_budget"
    lrs = [line["lr"] for line in metrics(result.run_dir)]
    assert len(lrs) == 11
    assert lrs[-1] == 0.0 and all(lr > 0 for lr in lrs[:-1])  # the cosine's end is the run's last step
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["stopped_by"] == "time_budget" and record["steps"] == 11
    assert record["time_budget"]["seconds_per_step"] == 2.0 and record["time_budget"]["total_steps"] == 11
    assert record["time_budget"]["steps_by_epochs"] == 30


def test_a_budget_that_holds_every_step_changes_nothing(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=10, pace=2))
    result = train(budget_config(tiny_model_dir, tmp_path, time_budget=60.0, epochs=2))
    assert result.steps == 6 and result.stopped_by == "steps" and result.time_budget["limited_by"] == "epochs/max_steps"


def test_resumed_after_the_decision_equals_the_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=10, pace=2))
    reference = train(budget_config(tiny_model_dir, tmp_path / "ref"))
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=10, pace=2))
    config = budget_config(tiny_model_dir, tmp_path / "paused")
    paused = train(config, stop_after=7)  # decided at step 4; checkpoint at 7
    assert not paused.finished and paused.stopped_by == "paused" and paused.time_budget["total_steps"] == 11
    # measured again, this faster clock would let all 30 steps fit: the resumed run must not measure again
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=1, pace=0.5))
    resumed = train(config, resume=True)
    assert resumed.resumed_from == 7 and resumed.steps == 11 and resumed.time_budget == reference.time_budget
    ours, theirs = metrics(resumed.run_dir), metrics(reference.run_dir)
    assert [(r["step"], r["lr"]) for r in ours] == [(r["step"], r["lr"]) for r in theirs]
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in theirs], abs=1e-6)
    a = load_file(str(reference.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed.run_dir / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_cli_time_budget(tiny_model_dir, tmp_path, monkeypatch):
    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--time-budget" in help_text
    monkeypatch.setattr(time_budget, "seconds_now", FakeClock(first=10, pace=2))
    data = write_chat_file(tmp_path / "train.jsonl")
    result = CliRunner().invoke(app, ["train", "--base", str(tiny_model_dir), "--data", str(data), "--out",
                                      str(tmp_path / "run"), "--batch-size", "4", "--epochs", "10", "--lora-r", "4",
                                      "--time-budget", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert "time budget 0.5 min: 2.000 s/step over steps 2-4" in result.stderr
    assert "done: 11 steps (the time budget's)" in result.stdout
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["train"]["time_budget"] == 0.5
