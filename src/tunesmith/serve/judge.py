"""The judge of model graders on the server (train/model_graders.py; an eval's criteria, /graders/run): one of the
key's models, asked through the chat route's own code (serve/routes/completions.py answer_chat) with the grader's
JSON schema as its response_format, so a judge's answers decode in the running batch beside everything else, as
background rows.

Graders grade in threads of their own (`graded`: the GRADING pool, not the server's worker threads): ask_many hands
its conversations to the server's event loop at once (they decode together) and waits for all of them, and each
answer's preparation needs a server worker thread; graders waiting in those same threads could take every one of
them (40) and wait for ever. A judge that cannot answer (its model deleted, a bad sampling parameter) gives each
sample an error, never an exception that would stop the run.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from pydantic import ValidationError
from starlette.requests import Request

from tunesmith.serve.errors import APIError
from tunesmith.serve.routes.completions import answer_chat
from tunesmith.train.model_graders import JudgeAnswer

GRADING = ThreadPoolExecutor(max_workers=16, thread_name_prefix="grading")
T = TypeVar("T")


async def graded(grade: Callable[..., T], *args) -> T:
    """Run a grading call (it may wait on judges, or on a python grader's subprocess) in the GRADING pool."""
    return await asyncio.get_running_loop().run_in_executor(GRADING, grade, *args)


class ServedJudge:
    def __init__(self, request: Request, owner: str, loop: asyncio.AbstractEventLoop):
        self.request, self.owner, self.loop = request, owner, loop

    def ask_many(self, model: str, conversations: list[list[dict]], schema: dict, sampling: dict) -> list[JudgeAnswer]:
        response_format = {"type": "json_schema", "json_schema": {"name": "grade", "schema": schema, "strict": True}}
        futures = [asyncio.run_coroutine_threadsafe(self.ask(model, messages, response_format, sampling), self.loop)
                   for messages in conversations]
        return [future.result() for future in futures]

    async def ask(self, model: str, messages: list[dict], response_format: dict, sampling: dict) -> JudgeAnswer:
        body = {"model": model, "messages": messages, "response_format": response_format, **sampling}
        try:
            answer = await answer_chat(self.request, self.owner, body)
        except (APIError, ValidationError) as error:
            return JudgeAnswer(error=str(error).splitlines()[0])
        return JudgeAnswer(answer["choices"][0]["message"].get("content") or "", answer["usage"])
