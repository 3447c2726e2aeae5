"""Two models compared on one suite, for the web UI's models page: model A answers as the baseline ("before"),
model B as the candidate ("after"), exactly as `tunesmith eval --model B --baseline A` compares them.

Run as: library code; routes/comparisons.py starts a comparison and follows it. It runs in a thread of the
server (the models load into the server process, so one comparison runs at a time) and its reports land in
HOME/comparisons/ID/ (report.json, report.md, report.html). The list lives in memory: a restart forgets it.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from tunesmith.evaluate.report import write_reports
from tunesmith.evaluate.runner import run_eval
from tunesmith.registry.db import new_id

log = logging.getLogger("tunesmith.comparisons")


class ComparisonRunning(Exception):
    """Another comparison is still running; its id is the message."""


@dataclass
class Comparison:
    id: str
    owner: str
    a: str
    b: str
    suite: str
    limit: int | None
    status: str = "running"  # running, succeeded or failed
    report: dict | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"object": "comparison", **{k: v for k, v in asdict(self).items() if k != "owner"}}


class Comparisons:
    def __init__(self, directory: Path):
        self.directory = directory
        self.items: dict[str, Comparison] = {}
        self.lock = threading.Lock()

    def start(self, owner: str, models: tuple[str, str], refs: tuple[str, str], suite: str, suite_path: Path,
              limit: int | None) -> Comparison:
        with self.lock:
            running = [c.id for c in self.items.values() if c.status == "running"]
            if running:
                raise ComparisonRunning(running[0])
            comparison = Comparison(new_id("cmp"), owner, models[0], models[1], suite, limit)
            self.items[comparison.id] = comparison
        threading.Thread(target=self.run, args=(comparison, refs, suite_path), name=f"compare-{comparison.id}",
                         daemon=True).start()
        return comparison

    def run(self, comparison: Comparison, refs: tuple[str, str], suite_path: Path) -> None:
        try:
            result = run_eval(refs[1], suite_path, baseline_ref=refs[0], limit=comparison.limit,
                              console=Console(stderr=True, quiet=True))
            paths = write_reports(result, self.directory / comparison.id)
            comparison.report, comparison.status = json.loads(paths["json"].read_text()), "succeeded"
        except Exception as exc:  # noqa: BLE001 — reported to the page that asked, and logged
            log.exception("comparison %s failed", comparison.id)
            comparison.error, comparison.status = f"{type(exc).__name__}: {exc}", "failed"

    def get(self, owner: str, comparison_id: str) -> Comparison | None:
        found = self.items.get(comparison_id)
        return found if found is not None and found.owner == owner else None
