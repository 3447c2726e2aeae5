"""The judge of an eval's model graders (train/model_graders.py): one of the key's models, asked through the chat
route's own code (serve/routes/completions.py answer_request) with the grader's JSON schema as its response_format,
so a judge's answers decode in the running batch beside everything else, as background rows.

Graders grade in worker threads; ask_many hands its conversations to the server's event loop at once (they decode
together) and waits for all of them. A judge that cannot answer (its model deleted, a bad sampling parameter) gives
each sample an error, never an exception that would stop the run.
"""
from __future__ import annotations

import asyncio

from pydantic import ValidationError
from starlette.requests import Request

from tunesmith.serve.errors import APIError
from tunesmith.serve.routes.completions import answer_request
from tunesmith.train.model_graders import JudgeAnswer


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
            answer = await answer_request(self.request, self.owner, "/v1/chat/completions", body)
        except (APIError, ValidationError) as error:
            return JudgeAnswer(error=str(error).splitlines()[0])
        return JudgeAnswer(answer["choices"][0]["message"].get("content") or "", answer["usage"])
