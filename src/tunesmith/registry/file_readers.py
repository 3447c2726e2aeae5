"""Who still reads an uploaded file: unfinished fine-tuning jobs (a resumed job rereads its files), unfinished
batches (the runner reads the input file's requests as it goes) and unfinished eval runs (their rows). Such a file
is neither deleted nor expired."""
from __future__ import annotations

from tunesmith.registry.batches import unfinished_batches_using
from tunesmith.registry.db import Database
from tunesmith.registry.evals import unfinished_runs_using
from tunesmith.registry.jobs import unfinished_jobs_using


def unfinished_readers(db: Database, owner: str, file_id: str) -> dict[str, list[str]]:
    """{"jobs": ids, "batches": ids, "eval_runs": ids}: the key's unfinished jobs, batches and eval runs that read
    `file_id`."""
    return {"jobs": unfinished_jobs_using(db, owner, file_id), "batches": unfinished_batches_using(db, owner, file_id),
            "eval_runs": unfinished_runs_using(db, owner, file_id)}
