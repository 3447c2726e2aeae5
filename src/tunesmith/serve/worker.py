"""The job worker: a supervisor thread in the server that trains queued jobs, one at a time, each in
its own process (`train_job`), never in a request handler.

Each poll it validates new jobs' files, follows the running job (metrics → events, checkpoints →
checkpoint rows, trained tokens), stops it when the user cancelled or paused it, and records how it
ended. A job still marked running when the worker starts was interrupted (server killed): it is
started again and continues from its last checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config import RunConfig, save_config
from tunesmith.registry import files, job_events, jobs, models
from tunesmith.registry.db import Database
from tunesmith.serve.errors import LOW_DISK_BYTES, out_of_space_message
from tunesmith.serve.hyperparameters import resolve_hyperparameters
from tunesmith.serve.job_config import job_run_config
from tunesmith.serve.retention import Retention
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.suites import available_suites, write_quick_suite
from tunesmith.serve.training_file import check_training_file
from tunesmith.train.checkpoint import complete_checkpoints, latest_checkpoint
from tunesmith.train.graders import parse_grader, uses_python
from tunesmith.train.metrics import METRICS_FILE, read_metrics

log = logging.getLogger("tunesmith.worker")
JOB_ID = re.compile(r"^ftjob-[0-9a-f]{24}$")
MAX_STEP_ERRORS = 10  # a job whose worker steps fail this many polls in a row is failed (worker_error)
REWARD_METRICS = ("rewards/accuracy", "rewards/margin", "valid_rewards/accuracy", "valid_rewards/margin")
# reinforcement (train/reward_objective.py): the grader's reward is what the run is judged by (its loss is a surrogate)
GRADER_METRICS = ("reward", "reward_std", "answer_tokens", "kl", "zero_std_groups", "clipped_answers", "grader_errors",
                  "valid_reward")
CHARTED_METRICS = ("lr", "token_accuracy", "valid_token_accuracy", "accuracy", "valid_accuracy", *REWARD_METRICS,
                   *GRADER_METRICS)  # passed on to the job's events for the UI


def metrics_message(record: dict) -> str:
    """A step's event line. A reinforcement step names the grader's reward, not its loss: that loss is a surrogate
    (~0 by construction) and its validation loss only the reward negated."""
    if "reward" in record:
        message = f"Step {record['step']}: reward={record['reward']:.3f}"
        if "valid_reward" in record:
            message += f", validation reward={record['valid_reward']:.3f}"
        return message
    message = f"Step {record['step']}: training loss={record['loss']:.4f}"
    if "valid_loss" in record:
        message += f", validation loss={record['valid_loss']:.4f}"
    if "rewards/accuracy" in record:
        message += f", reward accuracy={record['rewards/accuracy']:.2f}, margin={record['rewards/margin']:.3f}"
    return message


@dataclass
class RunningJob:
    job_id: str
    job_dir: Path
    process: subprocess.Popen
    recorded_step: int = 0
    started: float = field(default_factory=time.monotonic)  # this launch's start: the time limit counts from it
    checkpoints: set[int] = field(default_factory=set)

    @property
    def run_dir(self) -> Path:
        return self.job_dir / "run"


def job_dir(settings: ServeSettings, job_id: str) -> Path:
    if not JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return settings.jobs_dir / job_id


class JobWorker:
    def __init__(self, db: Database, settings: ServeSettings):
        self.db, self.settings = db, settings
        self.current: RunningJob | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.retention = Retention(db, settings)
        self.errors: Counter[str] = Counter()  # job id → its steps' errors in a row
        self.slot_given: dict[str, float] = {}  # key id → when one of its jobs last got the training slot

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop, name="tunesmith-job-worker", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop the thread and the training process; the job stays `running` and resumes on the next start."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        if self.current is not None:
            stop_process(self.current.process)
            self.current = None

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # keep serving: the queue itself could not be read (tick isolates each job)
                log.exception("job worker error")
            self.stopping.wait(self.settings.poll_seconds)

    def tick(self) -> None:
        """One poll. Each job's step is isolated (`isolated`): one job's error neither stops the others' nor the
        launch of the next job, and a job whose steps keep failing is failed instead of holding the queue."""
        self.isolated("retention", None, self.retention.run_if_due)
        for job in jobs.jobs_in(self.db, ("validating_files",)):
            self.isolated("validating files", job.id, self.validate, job)
        if self.current is not None:
            self.isolated("following", self.current.job_id, self.follow)
        for job in self.launch_order() if self.current is None else []:
            if self.isolated("starting", job.id, self.launch, job) and self.current is not None:
                break

    def isolated(self, step: str, job_id: str | None, action, *args) -> bool:
        """Run one step; False when it raised. MAX_STEP_ERRORS in a row for one job fail that job."""
        try:
            action(*args)
        except Exception as error:
            log.exception("job worker: %s %s failed", step, job_id or "")
            if job_id is not None:
                self.errors[job_id] += 1
                if self.errors[job_id] >= MAX_STEP_ERRORS:
                    self.give_up(job_id, step, error)
            return False
        self.errors.pop(job_id, None)
        return True

    def give_up(self, job_id: str, step: str, error: Exception) -> None:
        self.errors.pop(job_id, None)
        if self.current is not None and self.current.job_id == job_id:
            stop_process(self.current.process)
            self.current = None
        try:
            self.fail(job_id, "worker_error", f"the job worker failed {MAX_STEP_ERRORS} times in a row while "
                                              f"{step} ({type(error).__name__}: {error}) — see the server log")
        except Exception:  # the registry itself is failing: the job stays as it is and is tried again later
            log.exception("job worker: could not record the failure of %s", job_id)

    def launch_order(self) -> list[jobs.Job]:
        """Interrupted running jobs first (they held the slot when the server stopped), then queued jobs with the
        key that had the slot least recently first, each key's in order of creation: one key's queue of jobs
        cannot keep the training slot while another key waits."""
        queued = sorted(jobs.jobs_in(self.db, ("queued",)), key=lambda job: self.slot_given.get(job.owner, 0.0))
        return jobs.jobs_in(self.db, ("running",)) + queued

    # --- validating_files → queued | failed
    def file_path(self, owner: str, file_id: str | None) -> Path | None:
        if file_id is None:
            return None
        record = files.get_file(self.db, owner, file_id)
        if record is None:
            raise FileNotFoundError(f"file {file_id} was deleted")
        return files.blob_path(self.settings.files_dir, record.id, record.filename)

    def validate(self, job: jobs.Job) -> None:
        try:
            train_path = self.file_path(job.owner, job.training_file)
            report = check_training_file(train_path, self.file_path(job.owner, job.validation_file))
            problem = None if report.ok else f"{len(report.errors)} invalid row(s), first: {report.errors[0]['message']}"
        except FileNotFoundError as exc:
            problem = str(exc)
        try:
            if problem:
                self.fail(job.id, "invalid_training_file", f"Training or validation file invalid: {problem}", "training_file")
            else:
                jobs.transition(self.db, job.id, "queued", "worker", "Files validated; job queued")
        except jobs.InvalidTransition:
            pass  # cancelled meanwhile

    # --- queued | interrupted running → running, in a training process
    def python_grader_refused(self, job: jobs.Job) -> bool:
        """A job whose grader runs python was accepted by a server started with --allow-python-graders; started
        again without it, the server does not run that code either: the job is paused (its checkpoints kept) until
        an operator restarts with the flag and resumes it, or cancels it."""
        if job.grader is None or self.settings.allow_python_graders or not uses_python(parse_grader(job.grader)):
            return False
        try:
            jobs.transition(self.db, job.id, "paused", "worker",
                            "Job paused: its grader runs python, which this server does not allow; restart the server "
                            "with --allow-python-graders and resume the job, or cancel it")
        except jobs.InvalidTransition:
            pass  # cancelled or paused meanwhile
        return True

    def run_config(self, job: jobs.Job, hyper: dict, directory: Path) -> RunConfig:
        """The job's config, evaluated after training on the suite it names or else on a quick suite (suites.py)."""
        suite = None
        if job.suite is not None:
            suite = available_suites(self.settings).get(job.suite)
            if suite is None:
                raise ValueError(f"suite {job.suite} is no longer in {self.settings.suites_dir}")
        train_path, valid_path = self.file_path(job.owner, job.training_file), self.file_path(job.owner, job.validation_file)
        config = job_run_config(self.settings, self.db, owner=job.owner, model=job.model, method=job.method,
                                train_path=train_path, valid_path=valid_path, hyperparameters=hyper, seed=job.seed,
                                out=directory / "run", integrations=job.integrations, suite=suite, grader=job.grader)
        if suite is None and valid_path is not None and config.train.method in ("lora", "full"):
            config.eval.suite = write_quick_suite(valid_path, config.data.max_length, directory)
        return config

    def resolved_hyperparameters(self, job: jobs.Job) -> dict:
        """"auto" from the training file's size: its valid rows (pairs for DPO), as its upload check counted them."""
        record = files.get_file(self.db, job.owner, job.training_file)
        if record is None:
            raise FileNotFoundError(f"file {job.training_file} was deleted")
        return resolve_hyperparameters(job.hyperparameters, training_rows(record, self.settings.files_dir))

    def launch(self, job: jobs.Job) -> None:
        if self.python_grader_refused(job):
            return
        directory = job_dir(self.settings, job.id)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            if not (directory / "job.yaml").is_file():  # written once: a resumed run keeps its exact config
                hyper = self.resolved_hyperparameters(job)
                save_config(self.run_config(job, hyper, directory), directory / "job.yaml")
                jobs.set_hyperparameters(self.db, job.id, hyper)  # the job object shows what it trains with
            if job.status == "queued":
                jobs.transition(self.db, job.id, "running", "worker", "Fine-tuning job started")
        except (ValueError, FileNotFoundError) as exc:
            self.fail(job.id, "invalid_request", str(exc))
            return
        except jobs.InvalidTransition:
            return  # cancelled or paused between polls
        checkpoint = latest_checkpoint(directory / "run")
        if checkpoint is not None:
            job_events.add_event(self.db, job.id, f"Resuming from checkpoint at step {int(checkpoint.name.split('-')[1])}")
        (directory / "error.json").unlink(missing_ok=True)
        with open(directory / "train.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "tunesmith.serve.train_job", str(directory), job.owner], stdout=log_file,
                stderr=subprocess.STDOUT, env={**os.environ, "TUNESMITH_WORKER_PID": str(os.getpid())},
            )
        self.current = RunningJob(job.id, directory, process)
        self.slot_given[job.owner] = time.monotonic()

    # --- running → succeeded | failed, or stopped for cancel/pause
    def follow(self) -> None:
        """Cancel, pause and the time limit are honoured first: an error recording progress cannot defer them."""
        current = self.current
        job = jobs.get_job(self.db, current.job_id)
        if job.status != "running":  # the user cancelled or paused it
            stop_process(current.process)
            self.current = None
            return
        limit = self.settings.max_job_seconds
        if limit is not None and time.monotonic() - current.started > limit:
            stop_process(current.process)
            self.current = None
            self.fail(job.id, "time_limit_exceeded", f"the job ran longer than this server's limit of {limit:g} s "
                                                     "(serve --max-job-hours); its checkpoints are kept")
            return
        self.isolated("recording progress", None, self.record_progress, current)
        code = current.process.poll()
        if code is None:
            return
        self.current = None
        self.isolated("recording progress", None, self.record_progress, current)
        try:
            if code == 0:
                self.succeed(job, current.run_dir)
            else:
                error = read_error(current.job_dir)
                self.fail(job.id, error["code"], error["message"])
        except jobs.InvalidTransition:
            pass  # cancelled just as it ended: the user's choice stands

    def record_progress(self, current: RunningJob) -> None:
        metrics = read_metrics(current.run_dir / METRICS_FILE)  # the line being written is left for the next poll
        for record in metrics:
            if record["step"] <= current.recorded_step:
                continue
            data = {"step": record["step"], "train_loss": record["loss"], "epoch": record.get("epoch")}
            if "valid_loss" in record:
                data["valid_loss"] = record["valid_loss"]
            data |= {name: record[name] for name in CHARTED_METRICS if name in record}  # the UI plots them
            job_events.add_event(self.db, current.job_id, metrics_message(record), type="metrics", data=data,
                                 dedupe=f"{current.job_id}:step:{record['step']}")
            current.recorded_step = record["step"]
        if metrics and "trained_tokens" in metrics[-1]:
            jobs.update_progress(self.db, current.job_id, metrics[-1]["trained_tokens"])
        by_step = {r["step"]: r for r in metrics}
        job = jobs.get_job(self.db, current.job_id)
        for path in complete_checkpoints(current.run_dir):
            step = int(path.name.split("-")[1])
            if step in current.checkpoints or step not in by_step:
                continue
            valid = [r["valid_loss"] for r in metrics if r["step"] <= step and "valid_loss" in r]
            checkpoint_metrics = {"step": step, "train_loss": by_step[step]["loss"],
                                  **({"valid_loss": valid[-1]} if valid else {})}
            root = models.tuned_base(self.db, job.owner, job.model)
            model_id = f"{models.fine_tuned_model_id(root, job.suffix, job.id)}:ckpt-step-{step}"
            job_events.add_checkpoint(self.db, current.job_id, step, checkpoint_metrics, model_id)
            current.checkpoints.add(step)

    def succeed(self, job: jobs.Job, run_dir: Path) -> None:
        record = json.loads((run_dir / "run.json").read_text())
        root = models.tuned_base(self.db, job.owner, job.model)
        model_id = models.fine_tuned_model_id(root, job.suffix, job.id)
        jobs.transition(self.db, job.id, "succeeded", "worker", "The job has successfully completed",
                        fine_tuned_model=model_id, trained_tokens=record["trained_tokens"],
                        also=lambda tx: models.add_model(tx, model_id, job.owner, job.id, root, str(run_dir)))

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        jobs.transition(self.db, job_id, "failed", "worker", f"Job failed: {message}",
                        error={"code": code, "message": message, "param": param})


def training_rows(record: files.FileRecord, files_dir: Path) -> int:
    """Valid rows of an uploaded file, as its upload check counted them (non-blank lines if it stored no count)."""
    counted = [summary["valid_rows"] for summary in (record.report or {}).get("files", []) if summary["role"] == "train"]
    if counted:
        return counted[0]
    return sum(1 for line in files.blob_path(files_dir, record.id, record.filename).open("rb") if line.strip())


def read_error(directory: Path) -> dict:
    """What the training process said in error.json; on a full disk, where it may have failed to write that or
    failed in a library that hides the errno (torch.save), the disk's state."""
    path = directory / "error.json"
    error = json.loads(path.read_text()) if path.is_file() else None
    if (error is None or error["code"] == "training_failed") and shutil.disk_usage(directory).free < LOW_DISK_BYTES:
        return {"code": "insufficient_storage", "message": out_of_space_message(directory)}
    if error is not None:
        return error
    tail = (directory / "train.log").read_text(errors="replace")[-2000:] if (directory / "train.log").is_file() else ""
    return {"code": "training_failed", "message": f"the training process exited unexpectedly: {tail.strip()[-500:]}"}


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
