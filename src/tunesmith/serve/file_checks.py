"""The full data check of uploaded files, off the request path.

An upload is streamed to disk under the size cap, screened line by line (data/line_screen.py: huge lines,
bytes that are not UTF-8, nesting past the parser) and checked against the key's PII policy, then recorded
with OpenAI's status `uploaded` and answered at once. The full check (every row parsed and validated,
duplicates, the kind of file) then runs here, on one thread so that checks never take more than one core
from generation, and records `processed` with its report or `error` with the row errors in `status_details`.
A job naming a file waits for its check (`wait`) and is refused with the row errors when it failed.
Files still `uploaded` when the server stopped are checked again at startup (`resume`).
"""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from tunesmith.registry import files
from tunesmith.registry.db import Database
from tunesmith.serve.training_file import check_training_file

log = logging.getLogger("tunesmith.file_checks")
CHECK_WAIT_SECONDS = 60  # how long a job (or the UI's report) naming a file just uploaded waits for its check


def row_errors_message(filename: str, errors: list[dict]) -> str:
    lines = [f"line {e['line']}, {e['field']}: {e['message']}" + (f" ({e['hint']})" if e.get("hint") else "")
             for e in errors[:20]]
    more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
    return f"Invalid file {filename}: {len(errors)} invalid row(s):\n" + "\n".join(lines) + more


def checked_summary(path: Path, filename: str, extra: dict) -> tuple[dict | None, str | None]:
    """(the report to store, None) for a valid file, (`extra`, the row errors) for one that is not. The stored
    report names the file as the user did, not by our storage path."""
    report = check_training_file(path)  # supervised or classification rows
    if not report.ok:
        return extra, row_errors_message(filename, [{**e, "file": filename} for e in report.errors])
    summary = json.loads(report.model_dump_json(exclude={"preview"}).replace(json.dumps(str(path))[1:-1],
                                                                            json.dumps(filename)[1:-1]))
    return summary | extra, None


class FileChecks:
    def __init__(self, db: Database, files_dir: Path):
        self.db, self.files_dir = db, files_dir
        self.executor: ThreadPoolExecutor | None = None  # started by the first check, again after close()
        self.pending: dict[str, Future] = {}
        self.lock = threading.Lock()

    def submit(self, record: files.FileRecord) -> None:
        """Check the stored file in the background; what its record's report already holds (what the upload's
        PII policy did) is kept in the check's report."""
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-check")
            future = self.executor.submit(self.check, record)
            self.pending[record.id] = future
        future.add_done_callback(lambda _: self.forget(record.id, future))

    def forget(self, file_id: str, future: Future) -> None:
        with self.lock:
            if self.pending.get(file_id) is future:
                del self.pending[file_id]

    def check(self, record: files.FileRecord) -> None:
        path = files.blob_path(self.files_dir, record.id, record.filename)
        try:
            report, details = checked_summary(path, record.filename, record.report or {})
        except Exception as error:  # a bug in the check must not leave the file `uploaded` for ever
            if not path.is_file():
                return  # deleted while it was being checked
            log.exception("data check of %s failed", record.id)
            report, details = record.report, (f"The data check of {record.filename} failed ({type(error).__name__}: {error}); "
                                     "see the server log, or run `tunesmith data check` on the file.")
        files.finish_check(self.db, record.id, report, details)

    def wait(self, file_id: str, timeout: float) -> bool:
        """Block until the file's check (if any is running or queued) has finished; False past `timeout` seconds."""
        with self.lock:
            future = self.pending.get(file_id)
        if future is None:
            return True
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return False
        return True

    def resume(self) -> int:
        """Queue the check of every file a stopped server left `uploaded`; returns how many."""
        unchecked = files.unchecked_files(self.db)
        for record in unchecked:
            self.submit(record)
        return len(unchecked)

    def close(self) -> None:
        """Finish the running check; queued ones stay `uploaded` in the registry and are resumed at the next start."""
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
