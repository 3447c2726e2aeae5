"""/v1/responses (OpenAI's Responses API): `client.responses.create(model=..., input=...)`, streamed or not, with
instructions, function tools, `text.format` (JSON mode and schemas), `previous_response_id` or a `conversation`
(serve/routes/conversations.py), stored responses (retrieve, delete, input_items) and input_tokens counts.

A request is answered by the chat route's own code (serve/routes/completions.py prepare_chat: the model's running
batch, its guard, its sampling and grammars), translated both ways by serve/responses.py. Parameters that ask for
what this server does not do (background mode, built-in tools, reasoning effort, truncation "auto") are
OpenAI's 400 `unsupported_parameter` naming them, never an answer that ignored them. `include:
["message.output_text.logprobs"]` (with `top_logprobs` alternatives) gives each output token's log-probability,
as chat's `logprobs` does.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tunesmith.models.decoding.requests import Usage
from tunesmith.models.tool_calls import AnswerSplitter
from tunesmith.registry import conversations, responses
from tunesmith.registry.keys import ApiKey
from tunesmith.serve.auth import api_key, calling_key
from tunesmith.serve.errors import APIError, invalid_value, not_found
from tunesmith.serve.logprobs import chat_logprobs
from tunesmith.serve.responses import (EventStream, chat_messages, chat_response_format, chat_tool_choice, chat_tools,
                                       input_items, output_items, response_object)
from tunesmith.serve.routes.completions import (Answer, ChatRequest, admit, answer_deltas, answered,
                                                chat_completion_object, chat_prompt, client_gone, event_stream, joined,
                                                prepare_chat)
from tunesmith.serve.shapes import list_object

router = APIRouter(prefix="/v1/responses")
LOGPROBS = "message.output_text.logprobs"  # the one `include` this server answers: each output token's log-probability
# parameters this server does not implement, and the values that ask nothing of it
INERT = {"background": (None, False), "prompt": (None,), "max_tool_calls": (None,),
         "truncation": (None, "disabled"),
         "context_management": (None, []), "moderation": (None,)}


class ResponseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    stream: bool = False
    store: bool | None = None  # OpenAI's default: stored
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    reasoning: dict[str, Any] | None = None
    # accepted, and asking nothing of the answer: who asks, routing and caching hints
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    stream_options: dict[str, Any] | None = None
    conversation: str | dict[str, Any] | None = None  # a conversation's id (or {"id": ...}): context and record
    top_logprobs: int | None = Field(None, ge=0, le=20)  # alternatives per token, with include's logprobs
    include: list[str] | None = None
    # refused unless inert (INERT); any other field is refused by name (extra="forbid")
    background: bool | None = None
    prompt: Any = None
    max_tool_calls: int | None = None
    truncation: Literal["auto", "disabled"] | None = None
    context_management: Any = None
    moderation: Any = None

    def refuse_unsupported(self) -> None:
        for name, inert in INERT.items():
            if getattr(self, name) not in inert:
                raise APIError(400, f"Unsupported parameter: '{name}' is not supported by this server (tunesmith "
                                    "serve); leave it out of the request.", param=name, code="unsupported_parameter")
        if unknown := [name for name in self.include or [] if name != LOGPROBS]:
            raise APIError(400, f"Unsupported parameter: include {unknown[0]!r} — this server includes only "
                                f"{LOGPROBS!r}.", param="include", code="unsupported_parameter")
        if (self.reasoning or {}).get("effort") not in (None, "none"):
            raise APIError(400, "Unsupported parameter: 'reasoning.effort' — tunesmith's models do not reason before "
                                "answering; leave it out.", param="reasoning.effort", code="unsupported_parameter")


def responses_param(chat_param: str | None) -> str | None:
    """A chat request's field path as the Responses request names it (tools.0.function.name → tools[0].name)."""
    if chat_param is None:
        return None
    parts = chat_param.split(".")
    if parts[0] == "tools" and len(parts) > 1:
        return f"tools[{parts[1]}]" + "".join(f".{part}" for part in parts[2:] if part != "function")
    renamed = {"messages": "input", "response_format": "text.format", "max_completion_tokens": "max_output_tokens",
               "logprobs": "include"}
    return ".".join([renamed.get(parts[0], parts[0]), *parts[1:]])


def kept_conversation(request: Request, key: str, body: ResponseCreate) -> conversations.Conversation | None:
    """The conversation the response continues and is recorded in (`conversation`), or None."""
    if body.conversation is None:
        return None
    if body.previous_response_id is not None:
        raise APIError(400, "conversation and previous_response_id cannot both be given: a conversation keeps its own "
                            "items — send one of them", param="conversation", code="invalid_value")
    conversation_id = body.conversation if isinstance(body.conversation, str) else body.conversation.get("id")
    found = conversations.get_conversation(request.app.state.db, key, str(conversation_id))
    if found is None:
        raise not_found("conversation", str(conversation_id), param="conversation")
    return found


def previous_conversation(request: Request, key: str, previous_id: str | None) -> list[dict]:
    if previous_id is None:
        return []
    earlier = responses.conversation_of(request.app.state.db, key, previous_id)
    if earlier is None:
        raise not_found("response", previous_id, param="previous_response_id")
    return earlier


def as_chat_request(request: Request, key: str, body: ResponseCreate):
    """(the chat request that answers it, its input items, its kept conversation or None, the conversation so far)."""
    body.refuse_unsupported()
    items = input_items(body.input)
    kept = kept_conversation(request, key, body)
    earlier = chat_messages(conversations.all_items(request.app.state.db, kept)) if kept else \
        previous_conversation(request, key, body.previous_response_id)
    conversation = earlier + chat_messages(items)
    instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
    try:
        chat = ChatRequest.model_validate({
            "model": body.model, "messages": instructions + conversation, "max_completion_tokens": body.max_output_tokens,
            "temperature": body.temperature, "top_p": body.top_p, "tools": chat_tools(body.tools),
            "tool_choice": chat_tool_choice(body.tool_choice), "response_format": chat_response_format(body.text),
            "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
            **({"logprobs": True, "top_logprobs": body.top_logprobs or 0} if LOGPROBS in (body.include or []) else {})})
    except ValidationError as error:  # named as this request names the field
        failure = invalid_value(error.errors())
        failure.param = responses_param(failure.param)
        failure.message = f"Invalid value for {failure.param}: {error.errors()[0]['msg']}"
        raise failure from None
    return chat, items, kept, conversation


def in_responses_terms(prepare, request: Request, key: str, chat: ChatRequest):
    """prepare(request, key, chat), its errors naming fields as the Responses request does (a context too long
    names `messages`: here it is `input`)."""
    try:
        return prepare(request, key, chat)
    except APIError as error:
        error.param = responses_param(error.param)
        raise


def prepared_response(request: Request, key: str, body: ResponseCreate):
    """(the chat request's preparation, the response's echoed head, its input items, the conversation so far)."""
    chat, items, kept, conversation = as_chat_request(request, key, body)
    prepared = in_responses_terms(prepare_chat, request, key, chat)
    head = {"id": f"resp_{secrets.token_hex(24)}", "object": "response", "created_at": int(time.time()),
            "model": body.model, "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p, "tools": body.tools or [],
            "tool_choice": body.tool_choice or "auto", "parallel_tool_calls": chat.parallel_tool_calls,
            "text": body.text or {"format": {"type": "text"}}, "previous_response_id": body.previous_response_id,
            "store": body.store is not False, "conversation": {"id": kept.id} if kept else None,
            "metadata": body.metadata or {}, "reasoning": {"effort": None,
            "summary": None}, "truncation": "disabled", "user": body.user, "error": None, "background": False}
    return prepared, head, items, conversation


def finishing(request: Request, key: str, prepared, head: dict, items: list[dict], conversation: list[dict],
              usage: Usage):
    """(text, finish_reason) of the whole answer → (output items, finish reason, usage), the response stored."""

    def finished(text: str, finish_reason: str, logprobs: list | None = None,
                 message_id: str | None = None) -> tuple[list[dict], str, dict]:
        chat = chat_completion_object(prepared, [Answer(text, finish_reason, logprobs)], usage)
        output, finish = output_items(chat, message_id)
        if head["store"]:  # the conversation with its answer; its own messages (input items, answer) last
            answer = chat_messages(output)
            responses.store_response(request.app.state.db, key, response_object(head, output, finish, chat["usage"]),
                                     items, conversation + answer, head["previous_response_id"],
                                     added=len(chat_messages(items)) + len(answer))
        if head["conversation"] is not None:  # the exchange joins the conversation (unless it was deleted meanwhile)
            kept = conversations.get_conversation(request.app.state.db, key, head["conversation"]["id"])
            if kept is not None:
                conversations.add_items(request.app.state.db, kept, items + output)
        return output, finish, chat["usage"]

    return finished


@router.post("")
async def create_response(request: Request, body: ResponseCreate, key: ApiKey = Depends(calling_key)):
    prepared, head, items, conversation = await run_in_threadpool(prepared_response, request, key.id, body)
    reservation, usage = admit(request, key, prepared), Usage()
    finished = finishing(request, key.id, prepared, head, items, conversation, usage)

    if body.stream:
        raw = {"text": "", "finish_reason": "length", "logprobs": None}
        tokenizer = prepared.loaded.tokenizer

        async def deltas() -> AsyncIterator[tuple[str, list[dict]]]:
            splitter = AnswerSplitter() if prepared.tool_calls else None  # calls come whole, at the end
            async for delta in answer_deltas(prepared, usage):
                raw["text"] += delta.text
                raw["finish_reason"] = delta.finish_reason or raw["finish_reason"]
                logprobs = []
                if delta.logprobs is not None:
                    raw["logprobs"] = (raw["logprobs"] or []) + delta.logprobs
                    logprobs = chat_logprobs(tokenizer, delta.logprobs)["content"]
                yield (delta.text if splitter is None else splitter.feed(delta.text)), logprobs
            if splitter is not None:
                yield splitter.finish()[0], []

        async def whole(message_id: str) -> tuple[list[dict], str, dict]:  # the registry's write off the event loop
            return await run_in_threadpool(finished, raw["text"], raw["finish_reason"], raw["logprobs"], message_id)

        stream = EventStream(head).events(deltas(), whole)
        return await event_stream(stream, usage, reservation)
    answers = await answered(request, prepared, usage, reservation)
    if answers is None:
        return client_gone()
    output, finish, chat_usage = await run_in_threadpool(finished, answers[0].text, answers[0].finish_reason,
                                                         answers[0].logprobs)
    return response_object(head, output, finish, chat_usage)


@router.post("/input_tokens")
async def count_input_tokens(request: Request, body: ResponseCreate, key: str = Depends(api_key)):
    """The tokens the model would read for this request (instructions, conversation, tools in its chat template),
    without answering it: no answer grammar is built and no guard screens the input (nothing is generated)."""

    def counted() -> int:
        chat, *_ = as_chat_request(request, key, body)
        return len(in_responses_terms(chat_prompt, request, key, chat)[1])

    return {"object": "response.input_tokens", "input_tokens": await run_in_threadpool(counted)}


async def answer_response(request: Request, key: str, body: dict) -> dict:
    """A response as the route answers it without streaming, for a batch's runner (serve/batches.py): its rows are
    background rows (they yield to interactive requests); a bad body raises ValidationError or APIError."""
    parsed = ResponseCreate.model_validate(body)
    prepared, head, items, conversation = await run_in_threadpool(prepared_response, request, key, parsed)
    prepared.loaded = replace(prepared.loaded, slot=replace(prepared.loaded.slot, background=True))
    usage = Usage()
    (answer,) = await joined(answer_deltas(prepared, usage), 1)
    finished = finishing(request, key, prepared, head, items, conversation, usage)
    output, finish, chat_usage = await run_in_threadpool(finished, answer.text, answer.finish_reason, answer.logprobs)
    return response_object(head, output, finish, chat_usage)


def owned_response(request: Request, key: str, response_id: str) -> responses.StoredResponse:
    stored = responses.get_response(request.app.state.db, key, response_id)
    if stored is None:
        raise not_found("response", response_id, param="response_id")
    return stored


@router.get("/{response_id}")
def retrieve_response(request: Request, response_id: str, key: str = Depends(api_key)):
    return owned_response(request, key, response_id).body


@router.delete("/{response_id}")
def delete_response(request: Request, response_id: str, key: str = Depends(api_key)):
    if not responses.delete_response(request.app.state.db, key, response_id):
        raise not_found("response", response_id, param="response_id")
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/{response_id}/input_items")
def list_input_items(request: Request, response_id: str, after: str | None = None, limit: int = 20,
                     order: Literal["asc", "desc"] = "desc", key: str = Depends(api_key)):
    """OpenAI lists them newest first by default."""
    items = owned_response(request, key, response_id).input_items
    items = list(reversed(items)) if order == "desc" else items
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = max(1, min(limit, 100))
    return list_object(items[:limit], len(items) > limit)


@router.post("/{response_id}/cancel")
def cancel_response(request: Request, response_id: str, key: str = Depends(api_key)):
    owned_response(request, key, response_id)
    raise APIError(400, "Only a response created with background=true can be cancelled, and this server answers every "
                        "response in the request.", param="response_id", code="invalid_state")
