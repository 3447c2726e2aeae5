"""Two models compared on one suite, for the web UI's models page: model A answers as the baseline ("before"),
model B as the candidate ("after"), exactly as `tunesmith eval --model B --baseline A` compares them.

Run as: library code; routes/comparisons.py starts a comparison and follows it. It runs in a thread of the
server (the models load into the server process, so one comparison runs at a time); its row and report live in
the registry (registry/comparisons.py), so a report outlives a restart, and the report files land in
HOME/comparisons/ID/ (report.json, report.md, report.html).
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from rich.console import Console

from tunesmith.evaluate.report import write_reports
from tunesmith.evaluate.runner import run_eval
from tunesmith.registry import comparisons
from tunesmith.registry.comparisons import Comparison
from tunesmith.registry.db import Database

log = logging.getLogger("tunesmith.comparisons")


class Comparisons:
    def __init__(self, db: Database, directory: Path):
        self.db, self.directory = db, directory
        interrupted = comparisons.fail_interrupted(db)  # their threads died with the last server
        if interrupted:
            log.warning("%d comparison(s) were running when the server stopped: marked failed", interrupted)

    def start(self, owner: str, models: tuple[str, str], refs: tuple[str, str], suite: str, suite_path: Path,
              limit: int | None) -> Comparison:
        comparison = comparisons.start_comparison(self.db, owner, models[0], models[1], suite, limit)
        threading.Thread(target=self.run, args=(comparison, refs, suite_path), name=f"compare-{comparison.id}",
                         daemon=True).start()
        return comparison

    def run(self, comparison: Comparison, refs: tuple[str, str], suite_path: Path) -> None:
        try:
            result = run_eval(refs[1], suite_path, baseline_ref=refs[0], limit=comparison.limit,
                              console=Console(stderr=True, quiet=True))
            paths = write_reports(result, self.directory / comparison.id)
            comparisons.finish_comparison(self.db, comparison.id, report=json.loads(paths["json"].read_text()))
        except Exception as exc:  # noqa: BLE001 — reported to the page that asked, and logged
            log.exception("comparison %s failed", comparison.id)
            comparisons.finish_comparison(self.db, comparison.id, error=f"{type(exc).__name__}: {exc}")
