"""DIR/metrics.jsonl: one JSON object per logged step, appended while training runs; the one reader of it.

Whoever reads the file may meet a half-written last line: the trainer is writing it right now (the job
worker follows a running job), or the trainer was killed mid-write (a resumed run, a report on it). That
line is not a record yet, so `read_metrics` drops it, and a resumed run rewrites the file without it. A
line that does not parse anywhere else means the file was damaged: that is an error naming the line.
"""
from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class DamagedMetricsError(ValueError):
    """A line of metrics.jsonl before the last does not parse: the file was changed outside training."""


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order; [] when there is no file yet; a torn last line is dropped."""
    if not path.is_file():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if index == len(lines) - 1:
                break  # the line being written, or cut short by a kill
            raise DamagedMetricsError(
                f"{path}:{number}: not valid JSON ({exc.msg}) — the file was damaged after training wrote it; "
                "delete the line, or the file (only the training curve is lost)"
            ) from None
        records.append(record)
    return records


class MetricsLog:
    """Appends records to a run's metrics.jsonl; on resume, records past the checkpoint (and a torn line) are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if path.exists():
            kept = [record for record in read_metrics(path) if record["step"] <= resume_step]
            path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
