"""One fine-tuning job's training, in its own process, started and watched by the job worker.

Run as: python -m tunesmith.serve.train_job HOME/jobs/ftjob-… KEY_ID   (the worker does this; the key that
created the job is recorded in run.json as who started the run)

After training it evaluates the model on the config's suite (the job's, or the quick one of serve/suites.py),
base or parent before and the model after, into RUN/eval/ (the web UI's job page shows the report); a failed
gate is reported there and does not fail the job.

It always resumes: a job restarted after a crash, a SIGKILL of the server or a pause continues from
its newest complete checkpoint. It dies with the server (Linux parent-death signal) and holds a lock
on the job directory, so a restarted server never trains the same run twice at once.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import sys
import traceback
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    expected = os.environ.get("TUNESMITH_WORKER_PID")
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the job directory lock still prevents double training
        return
    if expected is not None and os.getppid() != int(expected):
        sys.exit(1)  # the server died before the signal was armed


def main(job_dir: Path, started_by: str | None = None) -> int:
    die_with_parent()
    from rich.console import Console

    from tunesmith.config import load_config
    from tunesmith.evaluate.after_training import check_eval_suite, evaluate_run
    from tunesmith.serve.errors import is_disk_full, out_of_space_message
    from tunesmith.train.recipes import train_run
    from tunesmith.train.setup import InvalidDataError

    with open(job_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for an orphan of a killed server to finish dying
        try:
            config, console = load_config(job_dir / "job.yaml"), Console(stderr=True, width=120)
            check_eval_suite(config)  # a broken suite fails the job now, not after the training it was to judge
            result = train_run(config, resume=True, console=console, started_by=started_by)
            if result.finished:
                evaluate_run(config, result.run_dir, console)
        except Exception as exc:
            traceback.print_exc()
            code = "invalid_training_file" if isinstance(exc, InvalidDataError) else "training_failed"
            message = str(exc)
            if is_disk_full(exc):
                code, message = "insufficient_storage", out_of_space_message(job_dir)
            try:
                (job_dir / "error.json").write_text(json.dumps({"code": code, "message": message}))
            except OSError:  # the full disk again: the worker sees the disk's state (worker.read_error)
                pass
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
