"""The run config a fine-tuning job trains with: the job worker saves it as job.yaml, and the web UI's cost
estimate (routes/preflight.py) estimates the same config before the job exists.

Run as: library code.
"""
from __future__ import annotations

from pathlib import Path

from tunesmith.config import RunConfig, load_config
from tunesmith.registry import models
from tunesmith.registry.db import Database
from tunesmith.serve.hyperparameters import EXTENSIONS, group_size
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.routes.models import served_entry
from tunesmith.serve.training_file import is_classification_file
from tunesmith.train.graders import parse_grader
from tunesmith.train.model_graders import uses_models

TRACKERS = ("tensorboard", "mlflow")  # job integrations this server runs itself (train.report_to)
KEEP_CHECKPOINTS = 3  # like OpenAI, a job offers its last three checkpoints
BASE_LR = 2e-4  # learning_rate_multiplier scales this (the config's LoRA default), for supervised and DPO jobs


def job_run_config(settings: ServeSettings, db: Database, *, owner: str, model: str, method: str, train_path: Path,
                   valid_path: Path | None, hyperparameters: dict, seed: int, out: Path,
                   integrations: list | None = None, suite: Path | None = None, grader: dict | None = None) -> RunConfig:
    """`hyperparameters` resolved (numbers, no "auto"); `model` a served base, or an ft: model of `owner` to continue;
    `grader` a reinforcement job's."""
    bases = settings.base_models()
    parent = None if model in bases else models.get_model(db, owner, model)
    if model not in bases and parent is None:
        raise ValueError(f"model {model} is neither a served base (start the server with --base) nor a "
                         "fine-tuned model of this key")
    start = {"model.parent.run": parent.run_dir} if parent else {"model.base": bases[model]}
    chosen = {}
    if method == "dpo":
        extensions = {f"dpo.{name}": value for name, value in hyperparameters.items() if name in EXTENSIONS["dpo"]}
        chosen = {"train.method": "dpo", "dpo.beta": hyperparameters["beta"], **extensions}
    if method == "reinforcement":
        chosen = {"train.method": "reinforcement", "reinforcement.grader": grader,
                  "reinforcement.judges": judge_refs(settings, db, owner, grader),
                  "reinforcement.group_size": group_size(hyperparameters["compute_multiplier"]),
                  "reinforcement.valid_samples": hyperparameters["eval_samples"],
                  "train.eval_every": hyperparameters["eval_interval"] if valid_path is not None else None}
    if is_classification_file(train_path):
        chosen = {"train.method": "classification"}  # a moderation model: /v1/moderations serves it
    return load_config(overrides={
        **start, "data.train": train_path, "data.valid": valid_path, "out": out,
        "data.pii": "allow",  # the upload applied the key's policy: the stored file is what may be trained on
        "train.report_to": [i["type"] for i in integrations or [] if i["type"] in TRACKERS],
        "train.epochs": hyperparameters["n_epochs"], "train.batch_size": hyperparameters["batch_size"],
        "train.lr": BASE_LR * hyperparameters["learning_rate_multiplier"], "train.seed": seed,
        "train.save_every": settings.checkpoint_every, "train.log_every": 1,
        "train.keep_checkpoints": KEEP_CHECKPOINTS, "eval.suite": suite, **chosen,
    })


def judge_refs(settings: ServeSettings, db: Database, owner: str, grader: dict) -> dict[str, str]:
    """What loads each judge of the grader's model graders: the key's bases, fine-tunes and versions by name."""
    refs = {}
    for name in uses_models(parse_grader(grader)):
        entry = served_entry(settings, db, owner, name)
        if entry is None:
            raise ValueError(f"the grader's judge {name} is neither a served base nor a model of this key")
        refs[name] = str(entry[1])
    return refs
