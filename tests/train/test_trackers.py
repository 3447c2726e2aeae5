"""train.report_to: a tiny run's metrics reach TensorBoard and MLflow's local file store as metrics.jsonl has them;
a tracker whose extra is missing is refused before training."""
import json

import pytest

from tunesmith.config import ConfigError, load_config
from tunesmith.train import trackers
from tunesmith.train.sft import train

ROWS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("tin", "Sn")]


def tiny_config(tmp_path, tiny_model_dir, report_to):
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {n}?"}, {"role": "assistant", "content": f"{s}."}]}
            for n, s in ROWS]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return load_config(overrides={"model.base": str(tiny_model_dir), "data.train": tmp_path / "train.jsonl",
                                  "out": tmp_path / "run", "train.max_steps": 3, "train.batch_size": 2,
                                  "train.log_every": 1, "lora.r": 4, "train.report_to": report_to})


def test_metrics_reach_tensorboard_and_mlflow(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(tiny_config(tmp_path, tiny_model_dir, ["tensorboard", "mlflow"]))
    run = tmp_path / "run"
    losses = [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert [step for step, _ in losses] == [1, 2, 3]

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("loss")] == losses

    client = MlflowClient((run / "mlruns").resolve().as_uri())
    run_id = (run / trackers.MLFLOW_RUN_ID).read_text()
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert history == [(step, pytest.approx(loss)) for step, loss in losses]
    mlflow_run = client.get_run(run_id)
    assert mlflow_run.data.params["lora.r"] == "4" and mlflow_run.info.status == "FINISHED"


def test_a_tracker_that_is_not_installed_is_refused_before_training(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(trackers, "tracker_installed", lambda name: name != "mlflow")
    with pytest.raises(ConfigError, match=r"train.report_to: mlflow is not installed — pip install 'tunesmith\[mlflow\]'"):
        train(tiny_config(tmp_path, tiny_model_dir, ["mlflow"]))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_an_unknown_tracker_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="report_to"):
        load_config(overrides={"train.report_to": ["wandb"]})
