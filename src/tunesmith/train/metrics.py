"""DIR/metrics.jsonl: one JSON object per logged step, appended while training runs; the one reader of it.

Whoever reads the file may meet a half-written last line: the trainer is writing it right now (the job
worker follows a running job), or the trainer was killed mid-write (a resumed run, a report on it). That
line is not a record yet, so `read_metrics` drops it, and a resumed run rewrites the file without it.
An earlier line that does not parse means the file was changed after training wrote it: it is dropped
with a warning naming the line, so that neither a resume, nor a report, nor a job's progress stops over
the loss curve.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tunesmith.train.trackers import Tracker

METRICS_FILE = "metrics.jsonl"

log = logging.getLogger("tunesmith.train")


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order; [] when there is no file yet; a torn last line is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number < len(lines):  # the last line is the one being written, or cut short by a kill
                log.warning("%s:%d: not valid JSON (%s), skipped — the file was changed after training wrote it; "
                            "delete the line to silence this", path, number, exc.msg)
    return records


def logged_so_far(path: Path, resume_step: int) -> dict:
    """The records of a metrics.jsonl up to `resume_step` merged in order (the last loss, the last valid_loss, ...):
    what a resumed run's recipe knows of the steps before it, also when it resumes at its last step and trains
    none. Records past the checkpoint are left out, as MetricsLog drops them."""
    merged: dict = {}
    for record in read_metrics(path):
        if record["step"] <= resume_step:
            merged.update(record)
    return merged


class MetricsLog:
    """Appends records to a run's metrics.jsonl; on resume, records past the checkpoint (and a torn line) are dropped.

    `trackers` (TensorBoard, MLflow: trackers.py) get every record written, after the file has it.
    """

    def __init__(self, path: Path, resume_step: int, trackers: list[Tracker] | None = None):
        self.path = path
        self.trackers = trackers or []
        if path.exists():
            kept = [record for record in read_metrics(path) if record["step"] <= resume_step]
            path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        for tracker in self.trackers:
            tracker.log(record)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
