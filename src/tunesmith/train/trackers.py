"""Metrics also sent to TensorBoard and MLflow, when `train.report_to` names them and their extras are installed.

Run as: tunesmith train CONFIG.yaml with `train: {report_to: [tensorboard, mlflow]}`, then
        tensorboard --logdir RUN_DIR/tensorboard   |   mlflow ui --backend-store-uri RUN_DIR/mlruns

metrics.jsonl stays the record every tunesmith reader uses; a tracker gets the same records as they are
written, each numeric field a scalar at the record's step (loss, valid_loss, lr, grad_norm, tokens_per_s, ...).
MLflow writes to a local file store in the run directory unless MLFLOW_TRACKING_URI names another, and
logs the resolved config as the run's parameters. A resumed run continues its MLflow run (the id is kept
in RUN_DIR/mlflow_run_id) and its TensorBoard curves (events past the checkpoint are purged).
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Protocol

import yaml

from tunesmith.config import ConfigError

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracker → the module its extra installs
MLFLOW_RUN_ID = "mlflow_run_id"


class TrackerUnavailable(ConfigError):
    """`train.report_to` names a tracker whose package is not installed."""


class Tracker(Protocol):
    def log(self, record: dict) -> None: ...

    def close(self) -> None: ...


def tracker_installed(name: str) -> bool:
    return name in EXTRAS and importlib.util.find_spec(EXTRAS[name]) is not None


def open_trackers(names: tuple[str, ...], run_dir: Path, resume_step: int) -> list[Tracker]:
    """The trackers `names` asks for, ready to log; refuses (before anything is written) one not installed."""
    for name in names:
        if not tracker_installed(name):
            raise TrackerUnavailable(f"train.report_to: {name} is not installed — pip install 'tunesmith[{name}]', "
                                     f"or remove {name} from train.report_to")
    trackers = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}
    return [trackers[name](Path(run_dir), resume_step) for name in names]


def scalars(record: dict) -> dict[str, float]:
    return {name: float(value) for name, value in record.items()
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardTracker:
    def __init__(self, run_dir: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote past its checkpoint, as metrics.jsonl drops its records
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, record: dict) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    def __init__(self, run_dir: Path, resume_step: int):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):  # MLflow 3 refuses its file store unless told; a run directory is the place for it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        id_file = run_dir / MLFLOW_RUN_ID
        if resume_step and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            return
        experiment = self.client.get_experiment_by_name("tunesmith")
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("tunesmith")
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        id_file.write_text(self.run_id)
        self.log_config(run_dir / "config.yaml")

    def log_config(self, path: Path) -> None:
        from mlflow.entities import Param

        if not path.is_file():
            return
        flat = {f"{section}.{key}": value for section, values in (yaml.safe_load(path.read_text()) or {}).items()
                if isinstance(values, dict) for key, value in values.items()}
        params = [Param(name, str(value)[:500]) for name, value in sorted(flat.items())]  # MLflow caps a value's length
        for start in range(0, len(params), 100):  # and a batch's size
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, record: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, record["step"]) for name, value in scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
