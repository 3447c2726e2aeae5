"""/v1/chat/completions and /v1/completions, streaming (SSE) or not, for base and fine-tuned models.

A guarded model (serve/guard.py) has its prompt screened before generation and its answer as it is generated.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tunesmith.models.chat import render_prompts
from tunesmith.models.classifier import is_classifier_dir
from tunesmith.serve.auth import api_key
from tunesmith.serve.batcher import generate_deltas, join_deltas
from tunesmith.serve.errors import APIError
from tunesmith.serve.guard import Screen, screen_for
from tunesmith.serve.model_pool import LoadedModel
from tunesmith.serve.requests import Delta, SamplingParams, Usage
from tunesmith.serve.routes.models import resolve_served

router = APIRouter(prefix="/v1")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_STOP_CHARS = 256  # each; OpenAI states none, a stop string longer than an answer stops nothing


class Message(BaseModel):
    role: str
    content: str | list[dict] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: only text parts carry meaning here
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def params(self, default_max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        check_stop(stop)
        return SamplingParams(max_new_tokens=self.max_tokens or default_max_tokens,
                              temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p, stop=stop, n=self.n, seed=self.seed)


def check_stop(stop: list[str]) -> None:
    """OpenAI's limits and error shape: at most 4 stop sequences; ours on each one's length, which the batcher
    thread scans at every token (serve/detokenize.py)."""
    if len(stop) > MAX_STOP_SEQUENCES:
        raise APIError(400, f"Invalid 'stop': array too long. Expected an array with maximum length "
                            f"{MAX_STOP_SEQUENCES}, but got an array with length {len(stop)} instead.",
                       param="stop", code="array_above_max_length")
    for index, text in enumerate(stop):
        if len(text) > MAX_STOP_CHARS:
            raise APIError(400, f"Invalid 'stop[{index}]': string too long. Expected a string with maximum length "
                                f"{MAX_STOP_CHARS}, but got a string with length {len(text)} instead.",
                           param=f"stop[{index}]", code="string_above_max_length")


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for /v1/completions


def load(request: Request, key: str, model_id: str) -> LoadedModel:
    """A LoRA fine-tune whose base is served runs as an adapter on that base; anything else as its own model."""
    served, pool, bases = resolve_served(request, key, model_id), request.app.state.pool, request.app.state.settings.base_models()
    ref = served.ref
    if is_classifier_dir(ref) or is_classifier_dir(Path(ref) / "model"):
        raise APIError(400, f"The model {model_id} is a moderation model: send its inputs to /v1/moderations.",
                       param="model", code="invalid_model")
    if served.adapter is not None:  # NAME:latest runs under its version's id: promote/rollback switch adapters
        return pool.get_adapter(served.base_id, bases[served.base_id], served.model_id, served.adapter)
    return pool.get(served.model_id, ref)


def check_context(loaded: LoadedModel, prompt_ids: list[int], params: SamplingParams) -> None:
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if limit is not None and len(prompt_ids) + params.max_new_tokens > limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens; the prompt has "
                            f"{len(prompt_ids)} and {params.max_new_tokens} more were requested.",
                       param="messages", code="context_length_exceeded")


def answer_deltas(loaded: LoadedModel, prompt_ids: list[int], params: SamplingParams, usage: Usage,
                  screen: Screen | None) -> Iterator[Delta]:
    """The choices' deltas as generated, or as released by the guard's output screen."""
    deltas = generate_deltas(prompt_ids, params, usage, loaded.slot)
    return deltas if screen is None else screen.screen_deltas(deltas, params.n)


def usage_object(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


@router.post("/chat/completions")
def chat_completions(request: Request, body: ChatRequest, key: str = Depends(api_key)):
    settings = request.app.state.settings
    body.max_tokens = body.max_completion_tokens or body.max_tokens
    params = body.params(settings.default_max_tokens)
    loaded = load(request, key, body.model)
    prompt_ids = render_prompts(loaded.tokenizer, [[{"role": m.role, "content": m.text()} for m in body.messages]])[0]
    check_context(loaded, prompt_ids, params)
    head = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": body.model,
            "system_fingerprint": None}
    screen = screen_for(request, key, body.model, head["id"])
    if screen is not None:
        screen.check_prompt([m.text() for m in body.messages], param="messages")
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(chat_stream(loaded, prompt_ids, params, head, include_usage, screen),
                                 media_type="text/event-stream")
    usage = Usage()
    answers = join_deltas(answer_deltas(loaded, prompt_ids, params, usage, screen), params.n)
    choices = [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None, "finish_reason": reason} for i, (text, reason) in enumerate(answers)]
    return {**head, "object": "chat.completion", "choices": choices, "usage": usage_object(usage)}


def chat_stream(loaded: LoadedModel, prompt_ids: list[int], params: SamplingParams, head: dict,
                include_usage: bool, screen: Screen | None) -> Iterator[str]:
    head = {**head, "object": "chat.completion.chunk"}

    def chunk(index: int, delta: dict, finish_reason: str | None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "choices": [choice], **({"usage": None} if include_usage else {})})

    for index in range(params.n):
        yield chunk(index, {"role": "assistant", "content": ""}, None)
    usage = Usage()
    for delta in answer_deltas(loaded, prompt_ids, params, usage, screen):
        if delta.text:
            yield chunk(delta.index, {"content": delta.text}, None)
        if delta.finish_reason:
            yield chunk(delta.index, {}, delta.finish_reason)
    if include_usage:
        yield sse({**head, "choices": [], "usage": usage_object(usage)})
    yield sse("[DONE]")


@router.post("/completions")
def completions(request: Request, body: CompletionRequest, key: str = Depends(api_key)):
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise APIError(400, "Send one prompt per request (a list of prompts is not supported yet).", param="prompt")
    params = body.params(request.app.state.settings.default_max_tokens)
    loaded = load(request, key, body.model)
    prompt_ids = loaded.tokenizer(prompts[0], add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise APIError(400, "The prompt is empty.", param="prompt")
    check_context(loaded, prompt_ids, params)
    head = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
            "model": body.model, "system_fingerprint": None}
    screen = screen_for(request, key, body.model, head["id"])
    if screen is not None:
        screen.check_prompt(prompts, param="prompt")
    if body.stream:
        return StreamingResponse(completion_stream(loaded, prompt_ids, params, head, screen),
                                 media_type="text/event-stream")
    usage = Usage()
    answers = join_deltas(answer_deltas(loaded, prompt_ids, params, usage, screen), params.n)
    choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": reason}
               for i, (text, reason) in enumerate(answers)]
    return {**head, "choices": choices, "usage": usage_object(usage)}


def completion_stream(loaded: LoadedModel, prompt_ids: list[int], params: SamplingParams, head: dict,
                      screen: Screen | None) -> Iterator[str]:
    for delta in answer_deltas(loaded, prompt_ids, params, Usage(), screen):
        choice = {"index": delta.index, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}
        yield sse({**head, "choices": [choice]})
    yield sse("[DONE]")
