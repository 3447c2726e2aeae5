"""The batch runner: each batch's requests (OpenAI's Batch API) answered in the background, into an output file.

A batch is a file of chat or text completion requests (serve/batch_file.py) that nobody waits on one by one: the
runner sends up to `settings.batch_concurrency` of them at a time through the routes' own code (the model's
running batch, its guard, its sampling), so they decode together as concurrent clients' would, and an offline job
(an evaluation set, a dataset to label) gets the engine's throughput at many rows without a client holding
connections. Each key's batches run one at a time, oldest first; other keys' run beside them (serve/background.py).

Each answer is appended as one JSON line to HOME/batches/BATCH_ID/output.jsonl (status 200) or errors.jsonl (any
other status: the request's own error, as its route would have answered it) as soon as it is done. A server
stopped mid-batch therefore resumes it at its next start with only the requests not yet answered (a line torn by
the stop is dropped and its request answered again). When every request is answered, or the batch is cancelled or
outlives its completion window, the two files become the batch's output and error files (purpose `batch_output`).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
import secrets
import shutil
import time
from pathlib import Path

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tunesmith.data.hashing import file_sha256
from tunesmith.registry import batches, files
from tunesmith.registry.batches import Batch
from tunesmith.serve.background import BackgroundRunner
from tunesmith.serve.batch_file import ENDPOINTS, check_batch_input, read_requests
from tunesmith.serve.errors import APIError, error_body, invalid_value
from tunesmith.serve.routes.completions import answer_chat, answer_completion
from tunesmith.serve.routes.moderations import ModerationRequest, moderation_object
from tunesmith.serve.routes.responses import answer_response


async def answer_moderation(request: Request, owner: str, body: dict) -> dict:
    """A classifier pass: in a worker thread, batched with its others."""
    parsed = ModerationRequest.model_validate(body)
    return await run_in_threadpool(moderation_object, request.app.state, owner, parsed)


# each endpoint's answer, by the routes' own code for a caller that is not their HTTP client
ANSWERS: dict[str, Callable[[Request, str, dict], Awaitable[dict]]] = {
    "/v1/chat/completions": answer_chat,
    "/v1/completions": answer_completion,
    "/v1/moderations": answer_moderation,
    "/v1/responses": answer_response,
}
assert set(ANSWERS) == set(ENDPOINTS), "batch_file.ENDPOINTS checks the files these answer"


class BatchRunner(BackgroundRunner):
    kind, path = "batches", "/v1/batches"  # the runner acts for each batch's key

    def unfinished(self) -> list[Batch]:
        return batches.unfinished_batches(self.db)

    def fail(self, batch: Batch, error: Exception) -> None:
        """Failed by the server's own error: the answers so far still become its output and error files."""
        batches.move(self.db, batch, "failed", errors=[{
            "code": "server_error", "message": f"The server had an error running the batch ({type(error).__name__}); "
            "the requests answered before it are in its output and error files.", "param": None, "line": None}])
        try:
            self.finish(batch)
        except Exception:
            self.log.exception("batch %s: its answers so far stay in %s", batch.id, self.directory(batch))

    def directory(self, batch: Batch) -> Path:
        return self.settings.home / "batches" / batch.id

    async def run(self, batch: Batch) -> None:
        if batch.status == "validating" and not await run_in_threadpool(self.validate, batch):
            return
        if batch.status == "in_progress":
            await self.answer(batch)
        await run_in_threadpool(self.finish, batch)

    def input_path(self, batch: Batch) -> Path | None:
        record = files.get_file(self.db, batch.owner, batch.input_file_id)
        return None if record is None else files.blob_path(self.settings.files_dir, record.id, record.filename)

    def validate(self, batch: Batch) -> bool:
        """validating → in_progress with its request count, or → failed with OpenAI's errors by line (a batch
        cancelled meanwhile goes on to `finish`)."""
        if batch.id in self.stopping:
            return True
        path = self.input_path(batch)
        if path is None:
            self.input_gone(batch)
            return False
        found = check_batch_input(path)
        errors = [{"code": "invalid_request", "message": f"line {e['line']}, {e['field']}: {e['message']}",
                   "param": e["field"], "line": e["line"] or None} for e in found.errors]
        if not errors and found.endpoint != batch.endpoint:
            errors = [{"code": "mismatched_endpoint", "message": f"The file's requests go to {found.endpoint}, the "
                       f"batch's endpoint is {batch.endpoint}.", "param": "endpoint", "line": None}]
        if errors:
            batches.move(self.db, batch, "failed", only_from=("validating",), errors=errors)
            return False
        return batches.move(self.db, batch, "in_progress", only_from=("validating",), total=found.requests)

    def input_gone(self, batch: Batch) -> None:
        """Failed: the input file was deleted (by retention: a user's delete is refused while the batch runs)."""
        batches.move(self.db, batch, "failed", errors=[{"code": "file_not_found", "param": "input_file_id",
                     "message": f"The input file {batch.input_file_id} was deleted.", "line": None}])

    async def answer(self, batch: Batch) -> None:
        """Answer the requests that have no answer yet, `batch_concurrency` at a time, until all are answered or the
        batch is cancelled or expires (requests already generating finish and are kept)."""
        directory = self.directory(batch)
        directory.mkdir(parents=True, exist_ok=True)
        outputs, errors = directory / "output.jsonl", directory / "errors.jsonl"
        answered = answered_ids(outputs) | answered_ids(errors)
        counts = {"completed": count_lines(outputs), "failed": count_lines(errors)}
        path = await run_in_threadpool(self.input_path, batch)
        if path is None:
            await run_in_threadpool(self.input_gone, batch)
            return
        waiting = iter([row for row in await run_in_threadpool(read_requests, path) if row["custom_id"] not in answered])

        async def answer_in_turn() -> None:
            for row in waiting:  # the workers share one iterator: each request is taken once
                if batch.id in self.stopping or time.time() >= batch.expires_at:
                    return
                async with self.slot():  # shared with other keys' batches running beside this one
                    line, ok = await self.answer_one(batch, row)
                with open(outputs if ok else errors, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line) + "\n")
                counts["completed" if ok else "failed"] += 1
                await run_in_threadpool(batches.count_answers, self.db, batch, counts["completed"], counts["failed"])

        await asyncio.gather(*(answer_in_turn() for _ in range(self.settings.batch_concurrency)))
        await run_in_threadpool(batches.count_answers, self.db, batch, count_lines(outputs), count_lines(errors))

    async def answer_one(self, batch: Batch, row: dict) -> tuple[dict, bool]:
        """OpenAI's output line for one request: its response (status, body as the route answers), and whether
        it succeeded."""
        try:
            body = await ANSWERS[batch.endpoint](self.request, batch.owner, row["body"])
            status = 200
        except ValidationError as error:
            failure = invalid_value(error.errors())
            body, status = error_body(failure), failure.status
        except APIError as error:
            body, status = error_body(error), error.status
        except Exception as error:  # the request's own failure; the batch goes on
            self.log.exception("batch %s, request %s", batch.id, row["custom_id"])
            body = error_body(APIError(500, f"The server had an error processing the request ({type(error).__name__})."))
            status = 500
        response = {"status_code": status, "request_id": f"req_{secrets.token_hex(12)}", "body": body}
        return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": row["custom_id"], "response": response,
                "error": None}, status == 200

    def finish(self, batch: Batch) -> None:
        """The answers become the output and error files; the batch ends completed, cancelled or expired. Each
        file's id is recorded on the batch before the file is, so finishing again after a stop makes no second copy."""
        batch = batches.get_batch(self.db, batch.owner, batch.id)  # a cancel may have moved it meanwhile
        if batch.status == "in_progress":
            done = batch.completed + batch.failed >= batch.total
            if not done and time.time() < batch.expires_at:
                return  # stopped with the server: resumed at its next start
            if not batches.move(self.db, batch, "finalizing" if done else "expired", only_from=("in_progress",)):
                batch = batches.get_batch(self.db, batch.owner, batch.id)  # cancelled after all
        directory = self.directory(batch)
        for kind, name in (("output_file_id", "output.jsonl"), ("error_file_id", "errors.jsonl")):
            path = directory / name
            if getattr(batch, kind) is None and path.is_file() and path.stat().st_size:
                batches.attach_file(self.db, batch, kind, files.new_file_id())
            file_id = getattr(batch, kind)
            if file_id is not None and files.get_file(self.db, batch.owner, file_id) is None and path.is_file():
                self.settings.files_dir.mkdir(parents=True, exist_ok=True)
                target = files.blob_path(self.settings.files_dir, file_id)
                shutil.copyfile(path, target)
                files.add_file(self.db, file_id, batch.owner, f"{batch.id}_{name}", "batch_output",
                               target.stat().st_size, None, sha256=file_sha256(target), action="file.created",
                               batch=batch.id)
        final = {"finalizing": "completed", "cancelling": "cancelled"}.get(batch.status, batch.status)
        if final != batch.status:
            batches.move(self.db, batch, final, only_from=(batch.status,))
        self.stopping.discard(batch.id)
        shutil.rmtree(directory, ignore_errors=True)


def answered_ids(path: Path) -> set[str]:
    """The custom_ids answered in a partial output file; a last line torn by a stop is cut off the file."""
    if not path.is_file():
        return set()
    content = path.read_bytes()
    whole = content[: content.rfind(b"\n") + 1]
    if len(whole) != len(content):
        with open(path, "r+b") as handle:
            handle.truncate(len(whole))
    return {json.loads(line)["custom_id"] for line in whole.splitlines() if line.strip()}


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0
