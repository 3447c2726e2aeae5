"""The eval runner: each eval run's rows graded in the background (OpenAI's Evals API), one run of a key at a time.

A `completions` run asks its model for each row through the routes' own code (serve/routes/completions.py
answer_chat: the model's running batch, its guard, its sampling, as background rows that yield to chats; a
`responses` run through the Responses API's, serve/routes/responses.py answer_response),
`settings.batch_concurrency` rows at a time, and grades the answers as they come, up to 64 to a grading call (a
python grader's subprocess serves them all). A `jsonl` run grades the answers its rows carry, 64 rows to a call.
Each graded row is recorded at once (registry/evals.py), so a run stopped with the server resumes at its next start
with the rows not yet graded, and a run cancelled or deleted stops at its next row.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tunesmith.evaluate.eval_data import EvalDataError, EvalRow, InputMessages, given_sample, rows_from_content, rows_from_file
from tunesmith.evaluate.testing_criteria import Criterion, parse_criteria
from tunesmith.registry import evals, files
from tunesmith.registry.evals import EvalRun
from tunesmith.serve.background import BackgroundRunner
from tunesmith.serve.errors import APIError, invalid_value
from tunesmith.serve.judge import ServedJudge, graded
from tunesmith.serve.routes.completions import answer_chat
from tunesmith.serve.routes.responses import answer_response
from tunesmith.train import grader_templates as templates
from tunesmith.train.graders import uses_python

JSONL_CHUNK = 64


@dataclass
class Sampled:
    """One row's sample: the namespace graders read (None when sampling failed) and the output item's `sample`."""
    namespace: dict | None
    shown: dict


class EvalRunner(BackgroundRunner):
    kind, path = "evals", "/v1/evals"  # the runner acts for each run's key

    def unfinished(self) -> list[EvalRun]:
        return evals.unfinished_runs(self.db)

    def fail(self, run: EvalRun, error: Exception) -> None:
        evals.move_run(self.db, run, "failed", error={
            "code": "server_error", "message": f"The server had an error running the eval ({type(error).__name__}); "
            "the rows graded before it are in the run's output items."})
        self.stopping.discard(run.id)

    async def run(self, run: EvalRun) -> None:
        if run.status == "queued" and not await run_in_threadpool(evals.move_run, self.db, run, "in_progress",
                                                                  only_from=("queued",)):
            return  # cancelled meanwhile
        found = await run_in_threadpool(evals.get_eval, self.db, run.owner, run.eval_id)
        if found is None:
            return  # deleted, with its runs
        criteria = parse_criteria(found.testing_criteria, judge=ServedJudge(self.request, run.owner, self.loop))
        if any(uses_python(c.grader) for c in criteria) and not self.settings.allow_python_graders:
            await run_in_threadpool(evals.move_run, self.db, run, "failed", error={
                "code": "python_graders_disabled", "message": "The eval's python graders run its code on the server, "
                "and the server was started again without --allow-python-graders: ask the operator to restart it "
                "with the flag, then create the run again."})
            return
        try:
            rows = await run_in_threadpool(self.rows, run)
        except EvalDataError as error:  # the file was deleted (retention) or no longer reads
            await run_in_threadpool(evals.move_run, self.db, run, "failed",
                                    error={"code": "invalid_data_source", "message": str(error)})
            return
        graded = await run_in_threadpool(evals.graded_indexes, self.db, run.id)
        waiting = [row for row in rows if row.index not in graded]
        if run.data_source["type"] == "jsonl":
            await self.grade_given(run, criteria, waiting)
        else:
            await self.ask_and_grade(run, criteria, waiting)
        if run.id in self.stopping:
            self.stopping.discard(run.id)
            return
        await run_in_threadpool(evals.move_run, self.db, run, "completed", only_from=("in_progress",))

    def rows(self, run: EvalRun) -> list[EvalRow]:
        source = run.data_source["source"]
        if source["type"] == "file_content":
            return rows_from_content(source["content"])
        record = files.get_file(self.db, run.owner, source["id"])
        if record is None:
            raise EvalDataError("data_source.source.id", f"The file {source['id']} was deleted.")
        return rows_from_file(files.blob_path(self.settings.files_dir, record.id, record.filename), record.filename)

    async def grade_given(self, run: EvalRun, criteria: list[Criterion], rows: list[EvalRow]) -> None:
        for start in range(0, len(rows), JSONL_CHUNK):
            if run.id in self.stopping:
                return
            chunk = rows[start:start + JSONL_CHUNK]
            samples = [given_sample(row.sample or {}) for row in chunk]
            verdicts = await graded(judged, criteria, samples, [row.item for row in chunk])
            for row, sample, results in zip(chunk, samples, verdicts):
                if not await run_in_threadpool(self.record, run, row, results, sample):
                    return  # deleted

    async def ask_and_grade(self, run: EvalRun, criteria: list[Criterion], rows: list[EvalRow]) -> None:
        source = run.data_source
        messages = InputMessages(source.get("input_messages") or {"type": "item_reference",
                                                                 "item_reference": "item.input"})
        waiting, answered, grading_failed = iter(rows), asyncio.Queue(), asyncio.Event()

        async def ask_in_turn() -> None:
            for row in waiting:  # the workers share one iterator: each row is taken once
                if run.id in self.stopping or grading_failed.is_set():
                    break
                async with self.slot():  # shared with other keys' runs beside this one
                    sampled = await self.sample(run, messages, row)
                await answered.put((row, sampled))
            await answered.put(None)  # this worker is done

        async def grade_as_answered(workers: int) -> None:
            """The rows answered so far, up to JSONL_CHUNK to one grading call (a python grader's subprocess serves
            them all), while the workers ask for the next ones."""
            while workers:
                ready = [await answered.get()]
                while len(ready) < JSONL_CHUNK and not answered.empty():
                    ready.append(answered.get_nowait())
                workers -= ready.count(None)
                ready = [entry for entry in ready if entry is not None]
                if run.id in self.stopping:
                    continue  # cancelled or deleted: what the workers still answer is dropped ungraded
                sampled = [(row, answer) for row, answer in ready if answer.namespace is not None]
                verdicts = await graded(judged, criteria, [answer.namespace for _, answer in sampled],
                                        [row.item for row, _ in sampled]) if sampled else []
                by_row = {row.index: results for (row, _), results in zip(sampled, verdicts)}
                for row, answer in ready:
                    results = by_row.get(row.index) or [
                        {"name": c.name, "type": c.grader.type, "passed": False, "score": 0.0, "sample": None,
                         "error": "no sample to grade"} for c in criteria]
                    recorded = run.id not in self.stopping and await run_in_threadpool(
                        self.record, run, row, results, answer.shown)
                    if not recorded:  # cancelled, or deleted (the record found no run): the workers stop
                        self.stopping.add(run.id)
                        break

        async def grade_until_done(workers: int) -> None:
            try:
                await grade_as_answered(workers)
            except BaseException:
                grading_failed.set()  # the workers stop asking; the run fails (BackgroundRunner)
                raise

        workers = self.settings.batch_concurrency
        await asyncio.gather(grade_until_done(workers), *(ask_in_turn() for _ in range(workers)))

    async def sample(self, run: EvalRun, messages: InputMessages, row: EvalRow) -> Sampled:
        """Ask the run's model for one row, as a client's chat completion would be answered."""
        params = run.data_source.get("sampling_params") or {}
        shown = {"input": [], "output": [], "finish_reason": None, "model": run.model, "usage": None, "error": None,
                 "temperature": params.get("temperature", 1.0), "top_p": params.get("top_p", 1.0),
                 "max_completion_tokens": params.get("max_completion_tokens"), "seed": params.get("seed")}
        try:
            asked = messages.messages(row.item)
            shown["input"] = [{"role": m.get("role"), "content": m.get("content")} for m in asked]
            if run.data_source["type"] == "responses":
                return await self.sample_response(run, asked, params, shown)
            body = {"model": run.model, "messages": asked, **params}
            answer = await answer_chat(self.request, run.owner, body)
        except templates.MissingField as error:
            return Sampled(None, shown | {"error": {"code": "invalid_item",
                                                    "message": f"input_messages read {error.path}, which this row lacks"}})
        except ValidationError as error:
            failure = invalid_value(error.errors())
            return Sampled(None, shown | {"error": {"code": failure.code or "invalid_request", "message": str(failure)}})
        except (APIError, ValueError) as error:
            code = getattr(error, "code", None) or "invalid_request"
            return Sampled(None, shown | {"error": {"code": code, "message": str(error)}})
        choice = answer["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        shown.update(output=[{"role": "assistant", "content": text}], finish_reason=choice["finish_reason"],
                     usage={**answer["usage"], "cached_tokens": 0})
        namespace = {"model": answer["model"], "choices": answer["choices"], "output_text": text,
                     "output_json": templates.parsed_json(text), "output_tools": message.get("tool_calls") or []}
        return Sampled(namespace, shown)

    async def sample_response(self, run: EvalRun, asked: list[dict], params: dict, shown: dict) -> Sampled:
        """A responses run's row: the Responses API's answer (serve/routes/responses.py), not stored."""
        body = {"model": run.model, "input": asked, "store": False, "max_output_tokens": params.get("max_completion_tokens"),
                **{name: params[name] for name in ("temperature", "top_p", "text", "tools") if name in params}}
        answer = await answer_response(self.request, run.owner, body)
        text = "".join(part["text"] for item in answer["output"] if item["type"] == "message" for part in item["content"])
        usage = answer["usage"]
        shown.update(output=[{"role": "assistant", "content": text}], usage={
            "prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"], "cached_tokens": 0},
            finish_reason="length" if answer["status"] == "incomplete" else "stop")
        namespace = {"model": answer["model"], "output_text": text, "output_json": templates.parsed_json(text),
                     "output_tools": [item for item in answer["output"] if item["type"] == "function_call"]}
        return Sampled(namespace, shown)

    def record(self, run: EvalRun, row: EvalRow, results: list[dict], sample: dict) -> bool:
        if sample.get("error") is not None or any(result.get("error") for result in results):
            status = "error"
        else:
            status = "pass" if all(result["passed"] for result in results) else "fail"
        return evals.record_item(self.db, run, row.index, status, row.item, results, sample)


def judged(criteria: list[Criterion], samples: list[dict], items: list[dict]) -> list[list[dict]]:
    """Each sample's results, one per criterion, as OpenAI's output items show them."""
    by_criterion = [criterion.judge_many(samples, items) for criterion in criteria]
    return [[{"name": criterion.name, "type": criterion.grader.type, "passed": verdict.passed, "score": verdict.score,
              "sample": verdict.judge, **({"error": verdict.error} if verdict.error else {})}
             for criterion, verdict in zip(criteria, per_sample)]
            for per_sample in zip(*by_criterion)]
