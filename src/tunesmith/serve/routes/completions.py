"""/v1/chat/completions and /v1/completions, streaming (SSE) or not, for base and fine-tuned models.

A guarded model (serve/guard.py) has its prompt screened before generation and its answer as it is generated.

The handlers are coroutines: what may take a while before generation (loading a model, tokenizing, screening)
runs in a worker thread, then the handler awaits the batcher without holding a thread, so any number of
generations leave the thread pool to health, auth and file routes. A non-streaming request whose client
disconnects is cancelled (its rows leave the batch); so is a stream. Each request holds one of its key's
slots and tokens (serve/limits.py) until it ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, ClassVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from tunesmith.models.chat import render_prompts
from tunesmith.models.tool_calls import AnswerSplitter, as_plain_messages, parse_answer
from tunesmith.models.classifier import is_classifier_dir
from tunesmith.registry.keys import ApiKey
from tunesmith.serve.auth import calling_key
from tunesmith.serve.batcher import generate_deltas, stream_deltas
from tunesmith.serve.errors import APIError
from tunesmith.serve.guard import Screen, screen_for
from tunesmith.serve.limits import Reservation
from tunesmith.serve.logprobs import MAX_LEGACY_LOGPROBS, MAX_TOP_LOGPROBS, chat_logprobs, completion_logprobs
from tunesmith.serve.model_pool import LoadedModel
from tunesmith.serve.response_format import ResponseFormat, answer_schema
from tunesmith.serve.tools import Tool, ToolChoice, answer_grammar, parses_calls, tool_call_objects, tool_specs
from tunesmith.models.decoding.requests import Delta, SamplingParams, TokenLogprob, Usage
from tunesmith.serve.routes.models import resolve_served

router = APIRouter(prefix="/v1")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_STOP_CHARS = 256  # each; OpenAI states none, a stop string longer than an answer stops nothing


class Message(BaseModel):
    role: str
    content: str | list[dict] | None = None
    tool_calls: list[dict] | None = None  # an assistant turn's calls, as OpenAI returned them
    tool_call_id: str | None = None  # a `tool` turn: the call it answers

    def as_dict(self) -> dict:
        """The turn for models/tool_calls.as_plain_messages: role, text, and its calls when it has any."""
        return {"role": self.role, "content": self.text(),
                **({"tool_calls": self.tool_calls} if self.tool_calls else {})}

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: only text parts carry meaning here
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI parameters this server does not implement, and the values they may be sent as: values that ask for nothing
UNSUPPORTED_IN_CHAT = {"functions": (None, []), "function_call": (None, "none"),  # deprecated for `tools`
                       "audio": (None,), "modalities": (None, ["text"]), "prediction": (None,),
                       "reasoning_effort": (None, "none"), "verbosity": (None, "medium"), "web_search_options": (None,),
                       "store": (None, False)}  # stored chat completions (retrieve, list, evals' logs source): none
UNSUPPORTED_IN_COMPLETIONS = {"echo": (None, False), "best_of": (None, 1), "suffix": (None, "")}


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field OpenAI's API does not have is refused by name
    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)  # OpenAI's range
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None  # token id (as a string, JSON's keys) -> -100 ... 100
    user: str | None = None  # who asks: accepted, asks nothing of the answer
    # OpenAI parameters this server does not implement: accepted at values that ask for nothing, refused otherwise
    # (an answer that silently ignored them would not be the answer asked for); see `refuse_unsupported`
    unsupported: ClassVar[dict] = {}

    def refuse_unsupported(self) -> None:
        """OpenAI's 400 for a parameter the model does not support, naming it (code `unsupported_parameter`)."""
        for name, inert in self.unsupported.items():
            if name in self.model_fields_set and getattr(self, name) not in inert:
                raise APIError(400, f"Unsupported parameter: '{name}' is not supported by this server "
                                    f"(tunesmith serve); leave it out of the request.",
                               param=name, code="unsupported_parameter")

    def params(self, default_max_tokens: int, vocab_size: int, logprobs: int | None = None) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        check_stop(stop)
        return SamplingParams(max_new_tokens=self.max_tokens or default_max_tokens,
                              temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p, stop=stop, n=self.n, seed=self.seed,
                              logprobs=logprobs, frequency_penalty=self.frequency_penalty or 0.0,
                              presence_penalty=self.presence_penalty or 0.0,
                              logit_bias=checked_logit_bias(self.logit_bias or {}, vocab_size))


def checked_logit_bias(bias: dict[str, float], vocab_size: int) -> dict[int, float]:
    """OpenAI's logit_bias as token id -> bias: keys are token ids of this model's vocabulary, values -100 ... 100."""
    checked = {}
    for key, value in bias.items():
        if not (key.isascii() and key.isdigit()):
            raise APIError(400, f"Invalid key in 'logit_bias': {key}. Keys are token ids: non-negative integers.",
                           param="logit_bias", code="invalid_value")
        if int(key) >= vocab_size:
            raise APIError(400, f"Invalid key in 'logit_bias': {key}. This model's token ids end at {vocab_size - 1}.",
                           param="logit_bias", code="invalid_value")
        if not -100 <= value <= 100:
            raise APIError(400, f"Invalid value for 'logit_bias' at key {key}: {value:g}. Biases are between -100 "
                                "and 100.", param="logit_bias", code="invalid_value")
        checked[int(key)] = value
    return checked


def check_stop(stop: list[str]) -> None:
    """OpenAI's limits and error shape: at most 4 stop sequences; ours on each one's length, which the batcher
    thread scans at every token (models/decoding/detokenize.py)."""
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
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = None  # function calling (serve/tools.py)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    functions: Any = None
    function_call: Any = None
    response_format: ResponseFormat | None = None  # text, JSON mode or a JSON schema (serve/response_format.py)
    # accepted, and asking nothing of the answer: who asks, routing and caching hints, metadata of an unstored answer
    metadata: dict[str, str] | None = Field(None, max_length=16)
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    # refused unless inert (UNSUPPORTED_IN_CHAT)
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: Any = None
    store: bool | None = None
    unsupported: ClassVar[dict] = UNSUPPORTED_IN_CHAT

    def logprobs_asked(self) -> int | None:
        """How many alternatives each token's log-probability comes with; None when logprobs were not asked for."""
        if self.top_logprobs and not self.logprobs:
            raise APIError(400, "Invalid value for 'top_logprobs': 'logprobs' must be true to use it.",
                           param="top_logprobs", code="invalid_value")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for /v1/completions
    logprobs: int | None = Field(None, ge=0, le=MAX_LEGACY_LOGPROBS)  # 0 already asks for the chosen tokens'
    echo: Any = None
    best_of: Any = None
    suffix: Any = None
    unsupported: ClassVar[dict] = UNSUPPORTED_IN_COMPLETIONS


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


def vocab_size(loaded: LoadedModel) -> int:
    """The width of the model's logits: the token ids a logit_bias may name."""
    return loaded.model.config.vocab_size


def check_context(loaded: LoadedModel, prompt_ids: list[int], params: SamplingParams) -> None:
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if limit is not None and len(prompt_ids) + params.max_new_tokens > limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens; the prompt has "
                            f"{len(prompt_ids)} and {params.max_new_tokens} more were requested.",
                       param="messages", code="context_length_exceeded")


@dataclass
class Prepared:
    """A generation request checked and ready: its model loaded, its prompt tokenized, its guard (if any)."""

    loaded: LoadedModel
    prompt_ids: list[int]
    params: SamplingParams
    head: dict
    screen: Screen | None
    prompt_chars: int = 0  # a text completion's prompt, in characters: where its answer's text_offset starts
    tool_calls: bool = False  # a chat answer's <tool_call> blocks come back as tool_calls (serve/tools.py)


def refuse_logprobs_when_guarded(screen: Screen | None, params: SamplingParams, model: str) -> None:
    if screen is not None and params.logprobs is not None:
        raise APIError(400, f"Unsupported parameter: 'logprobs' is not available from {model}, whose answers a "
                            "moderation guard releases as it screens them; leave it out.",
                       param="logprobs", code="unsupported_parameter")


def chat_prompt(request: Request, key: str, body: ChatRequest) -> tuple[LoadedModel, list[int], list]:
    """(the model, the prompt's tokens as its chat template writes the messages and tools, the tools' specs): what
    the model reads, without the answer's grammar or the guard's screen (serve/routes/responses.py counts it)."""
    body.refuse_unsupported()
    loaded = load(request, key, body.model)
    tools = tool_specs(body.tools, body.tool_choice)
    messages = as_plain_messages([m.as_dict() for m in body.messages], tools)
    return loaded, render_prompts(loaded.tokenizer, [messages])[0], tools


def prepare_chat(request: Request, key: str, body: ChatRequest) -> Prepared:
    """Everything before generation; in a worker thread (it may load a model, tokenize, screen the prompt)."""
    loaded, prompt_ids, tools = chat_prompt(request, key, body)
    body.max_tokens = body.max_completion_tokens or body.max_tokens
    params = body.params(request.app.state.settings.default_max_tokens, vocab_size(loaded), body.logprobs_asked())
    schema = answer_schema(body.response_format, [m.text() for m in body.messages], loaded.tokenizer,
                           vocab_size(loaded))
    params.grammar = answer_grammar(schema, tools, body.tool_choice, body.parallel_tool_calls, loaded.tokenizer,
                                    vocab_size(loaded))
    check_context(loaded, prompt_ids, params)
    head = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": body.model,
            "system_fingerprint": None}
    screen = screen_for(request, key, body.model, head["id"])
    refuse_logprobs_when_guarded(screen, params, body.model)
    if screen is not None:
        screen.check_prompt([m.text() for m in body.messages], param="messages")
    return Prepared(loaded, prompt_ids, params, head, screen, tool_calls=parses_calls(tools, body.tool_choice))


def prepare_completion(request: Request, key: str, body: CompletionRequest) -> Prepared:
    body.refuse_unsupported()
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise APIError(400, "Send one prompt per request (a list of prompts is not supported yet).", param="prompt")
    loaded = load(request, key, body.model)
    params = body.params(request.app.state.settings.default_max_tokens, vocab_size(loaded), body.logprobs)
    prompt_ids = loaded.tokenizer(prompts[0], add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise APIError(400, "The prompt is empty.", param="prompt")
    check_context(loaded, prompt_ids, params)
    head = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
            "model": body.model, "system_fingerprint": None}
    screen = screen_for(request, key, body.model, head["id"])
    refuse_logprobs_when_guarded(screen, params, body.model)
    if screen is not None:
        screen.check_prompt(prompts, param="prompt")
    return Prepared(loaded, prompt_ids, params, head, screen, prompt_chars=len(prompts[0]))


def admit(request: Request, key: ApiKey, prepared: Prepared) -> Reservation:
    """The key's slot and tokens (OpenAI counts prompt + max_tokens × n), or 429 (serve/limits.py)."""
    params = prepared.params
    return request.app.state.limits.admit(key, len(prepared.prompt_ids) + params.max_new_tokens * params.n)


async def answer_deltas(prepared: Prepared, usage: Usage) -> AsyncIterator[Delta]:
    """The choices' deltas as generated, or as released by the guard's output screen.

    Unguarded, the route awaits the batcher without holding a thread. The guard's screen runs a classifier
    over the text, so a guarded answer is screened in a worker thread."""
    loaded, params = prepared.loaded, prepared.params
    if prepared.screen is None:
        async for delta in stream_deltas(prepared.prompt_ids, params, usage, loaded.slot):
            yield delta
        return
    screened = prepared.screen.screen_deltas(generate_deltas(prepared.prompt_ids, params, usage, loaded.slot), params.n)
    try:
        async for delta in iterate_in_threadpool(screened):
            yield delta
    finally:
        await run_in_threadpool(screened.close)  # stops generation when the client has gone


@dataclass
class Answer:
    text: str = ""
    finish_reason: str = "length"
    logprobs: list[TokenLogprob] | None = None  # when asked for: one entry per token of the text


async def joined(deltas: AsyncIterator[Delta], n: int) -> list[Answer]:
    """Each choice's answer, as batcher.join_deltas."""
    answers = [Answer() for _ in range(n)]
    async for delta in deltas:
        answer = answers[delta.index]
        answer.text += delta.text
        if delta.finish_reason:
            answer.finish_reason = delta.finish_reason
        if delta.logprobs is not None:
            answer.logprobs = answer.logprobs or []
            answer.logprobs.extend(delta.logprobs)
    return answers


async def until_disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answered(request: Request, prepared: Prepared, usage: Usage,
                   reservation: Reservation) -> list[Answer] | None:
    """A non-streaming request's choices, or None when its client disconnected first: then its rows leave the
    batch at once instead of generating max_tokens for nobody."""
    answer = asyncio.ensure_future(joined(answer_deltas(prepared, usage), prepared.params.n))
    gone = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
        return None
    finally:
        gone.cancel()
        answer.cancel()
        reservation.release(usage.total_tokens)


async def event_stream(chunks: AsyncIterator[str], usage: Usage, reservation: Reservation) -> StreamingResponse:
    """An SSE response whose key slot is released however it ends. Started here (its first chunk taken), so that
    even a client gone before the first byte closes the generator, and with it the request's batch rows."""

    async def released() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            reservation.release(usage.total_tokens)

    started = released()
    try:
        first = await started.__anext__()
    except BaseException:
        await started.aclose()
        raise

    async def body() -> AsyncIterator[str]:
        yield first
        async for chunk in started:
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream",
                             background=BackgroundTask(reservation.release, None))


def usage_object(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def client_gone() -> Response:
    return Response(status_code=499)  # nobody reads it: the client closed the connection


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatRequest, key: ApiKey = Depends(calling_key)):
    prepared = await run_in_threadpool(prepare_chat, request, key.id, body)
    reservation, usage = admit(request, key, prepared), Usage()
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return await event_stream(chat_stream(prepared, usage, include_usage), usage, reservation)
    answers = await answered(request, prepared, usage, reservation)
    if answers is None:
        return client_gone()
    return chat_completion_object(prepared, answers, usage)


def chat_completion_object(prepared: Prepared, answers: list[Answer], usage: Usage) -> dict:
    tokenizer = prepared.loaded.tokenizer
    choices = []
    for i, answer in enumerate(answers):
        message = {"role": "assistant", "content": answer.text, "refusal": None}
        finish_reason = answer.finish_reason
        if prepared.tool_calls:
            content, calls = parse_answer(answer.text)
            if calls:
                message = {**message, "content": content, "tool_calls": tool_call_objects(calls)}
                finish_reason = "tool_calls"
        choices.append({"index": i, "message": message,
                        "logprobs": None if answer.logprobs is None else chat_logprobs(tokenizer, answer.logprobs),
                        "finish_reason": finish_reason})
    return {**prepared.head, "object": "chat.completion", "choices": choices, "usage": usage_object(usage)}


async def chat_stream(prepared: Prepared, usage: Usage, include_usage: bool) -> AsyncIterator[str]:
    head = {**prepared.head, "object": "chat.completion.chunk"}

    def chunk(index: int, delta: dict, finish_reason: str | None, logprobs: list[TokenLogprob] | None = None) -> str:
        choice = {"index": index, "delta": delta,
                  "logprobs": None if logprobs is None else chat_logprobs(prepared.loaded.tokenizer, logprobs),
                  "finish_reason": finish_reason}
        return sse({**head, "choices": [choice], **({"usage": None} if include_usage else {})})

    # with tools, each choice's text passes a splitter: text before a call streams, calls come whole at the end
    splitters = [AnswerSplitter() if prepared.tool_calls else None for _ in range(prepared.params.n)]
    for index in range(prepared.params.n):
        yield chunk(index, {"role": "assistant", "content": ""}, None)
    async for delta in answer_deltas(prepared, usage):
        splitter = splitters[delta.index]
        text = delta.text if splitter is None else splitter.feed(delta.text)
        if text or delta.logprobs:
            yield chunk(delta.index, {"content": text}, None, delta.logprobs)
        if delta.finish_reason:
            finish_reason = delta.finish_reason
            if splitter is not None:
                rest, calls = splitter.finish()
                if rest:
                    yield chunk(delta.index, {"content": rest}, None)
                if calls:
                    objects = [{"index": k, **call} for k, call in enumerate(tool_call_objects(calls))]
                    yield chunk(delta.index, {"tool_calls": objects}, None)
                    finish_reason = "tool_calls"
            yield chunk(delta.index, {}, finish_reason)
    if include_usage:
        yield sse({**head, "choices": [], "usage": usage_object(usage)})
    yield sse("[DONE]")


@router.post("/completions")
async def completions(request: Request, body: CompletionRequest, key: ApiKey = Depends(calling_key)):
    prepared = await run_in_threadpool(prepare_completion, request, key.id, body)
    reservation, usage = admit(request, key, prepared), Usage()
    if body.stream:
        return await event_stream(completion_stream(prepared, usage), usage, reservation)
    answers = await answered(request, prepared, usage, reservation)
    if answers is None:
        return client_gone()
    return completion_object(prepared, answers, usage)


def completion_object(prepared: Prepared, answers: list[Answer], usage: Usage) -> dict:
    choices = [{"index": i, "text": answer.text, "finish_reason": answer.finish_reason,
                "logprobs": None if answer.logprobs is None else
                completion_logprobs(prepared.loaded.tokenizer, answer.logprobs, prepared.prompt_chars)}
               for i, answer in enumerate(answers)]
    return {**prepared.head, "choices": choices, "usage": usage_object(usage)}


async def answer_chat(request: Request, key: str, body: dict) -> dict:
    """A chat completion as the route gives it without streaming, for a caller that is not its HTTP client (a
    batch's runner, an eval run, a judge), acting for `key`; see in_background."""
    return await in_background(request, key, ChatRequest.model_validate(body), prepare_chat, chat_completion_object)


async def answer_completion(request: Request, key: str, body: dict) -> dict:
    """A text completion likewise (answer_chat)."""
    return await in_background(request, key, CompletionRequest.model_validate(body), prepare_completion,
                               completion_object)


async def in_background(request: Request, key: str, parsed: Sampling, prepare, answer_object) -> dict:
    """The parsed request answered with the app's request scope: its rows join the running batch as a route's do,
    as background rows (serve/batcher.py: they yield to interactive requests). A bad body raises pydantic's
    ValidationError (at model_validate) or APIError, as the route would answer 400."""
    prepared = await run_in_threadpool(prepare, request, key, parsed)
    prepared.loaded = replace(prepared.loaded, slot=replace(prepared.loaded.slot, background=True))  # yields to chats
    usage = Usage()
    return answer_object(prepared, await joined(answer_deltas(prepared, usage), prepared.params.n), usage)


async def completion_stream(prepared: Prepared, usage: Usage) -> AsyncIterator[str]:
    offsets = [prepared.prompt_chars] * prepared.params.n  # each choice's text so far, from the prompt's start
    async for delta in answer_deltas(prepared, usage):
        logprobs = None
        if delta.logprobs is not None:
            logprobs = completion_logprobs(prepared.loaded.tokenizer, delta.logprobs, offsets[delta.index])
            offsets[delta.index] += sum(len(token) for token in logprobs["tokens"])
        choice = {"index": delta.index, "text": delta.text, "logprobs": logprobs, "finish_reason": delta.finish_reason}
        yield sse({**prepared.head, "choices": [choice]})
    yield sse("[DONE]")
