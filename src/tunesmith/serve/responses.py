"""OpenAI's Responses API over the chat route: a request's input items become chat messages, the chat answer becomes
output items (a message with output_text, function_call items), and a stream of chat deltas becomes the Responses
API's typed events.

Input items: messages (`{"role", "content"}`: a string or input_text / output_text parts; `developer` is a system
turn), `function_call` items (an assistant turn's calls) and `function_call_output` items (the tool's answer to a
call_id). A response continued with `previous_response_id` starts from the stored conversation (registry/
responses.py); its `instructions` are the new request's own, as at OpenAI.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import AsyncIterator

from tunesmith.serve.errors import APIError

INPUT_ROLES = ("user", "assistant", "system", "developer")


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def input_items(given: str | list, where: str = "input") -> list[dict]:
    """The request's input as OpenAI's input item objects, each with an id (what /input_items lists); errors name
    `where` (a conversation's items are `items`)."""
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    items = []
    for index, item in enumerate(given):
        if not isinstance(item, dict):
            raise APIError(400, f"{where}[{index}]: expected an item object", param=f"{where}[{index}]")
        kind = item.get("type", "message")
        if kind == "message":
            role, content = item.get("role"), item.get("content")
            if role not in INPUT_ROLES:
                raise APIError(400, f"{where}[{index}].role: one of {', '.join(INPUT_ROLES)}", param=f"{where}[{index}].role")
            items.append({"id": item.get("id") or new_item_id("msg"), "type": "message", "role": role,
                          "status": "completed", "content": content_parts(content, f"{where}[{index}].content")})
        elif kind == "function_call":
            missing = [name for name in ("call_id", "name", "arguments") if not isinstance(item.get(name), str)]
            if missing:
                raise APIError(400, f"{where}[{index}]: a function_call item needs {', '.join(missing)}",
                               param=f"{where}[{index}]")
            items.append({"id": item.get("id") or new_item_id("fc"), "type": "function_call", "status": "completed",
                          "call_id": item["call_id"], "name": item["name"], "arguments": item["arguments"]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                raise APIError(400, f"{where}[{index}]: a function_call_output item needs call_id and output (a string)",
                               param=f"{where}[{index}]")
            items.append({"id": item.get("id") or new_item_id("fco"), "type": "function_call_output",
                          "status": "completed", "call_id": item["call_id"], "output": item["output"]})
        else:
            raise APIError(400, f"{where}[{index}].type: {kind!r} is not supported — messages, function_call and "
                                "function_call_output items are", param=f"{where}[{index}].type",
                           code="unsupported_parameter")
    return items


def content_parts(content, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text") or \
                    not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else None
                raise APIError(400, f"{where}[{index}]: {kind!r} content is not supported — text parts "
                                    "(input_text, output_text) are", param=f"{where}[{index}]",
                               code="unsupported_parameter")
            parts.append({"type": part["type"], "text": part["text"]})
        return parts
    raise APIError(400, f"{where}: a string or a list of text parts", param=where)


def chat_messages(items: list[dict]) -> list[dict]:
    """Input items as chat messages: consecutive function_call items join one assistant turn's tool_calls."""
    messages: list[dict] = []
    for item in items:
        if item["type"] == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": "".join(part["text"] for part in item["content"])})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None \
                    and not messages[-1]["content"]:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def chat_tools(tools: list[dict] | None) -> list[dict] | None:
    """Responses' flat function tools ({type, name, parameters}) as chat's ({type, function: {...}})."""
    if tools is None:
        return None
    converted = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise APIError(400, f"tools[{index}].type: {kind!r} tools are not supported — function tools are (your "
                                "code runs them and answers with a function_call_output item)",
                           param=f"tools[{index}].type", code="unsupported_parameter")
        function = {name: tool[name] for name in ("name", "description", "parameters", "strict") if name in tool}
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice) -> object:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def chat_response_format(text: dict | None) -> dict | None:
    """`text.format` as chat's response_format."""
    form = (text or {}).get("format")
    if form is None or form.get("type") in ("text", "json_object"):
        return form
    if form.get("type") == "json_schema":
        schema = {name: form[name] for name in ("name", "schema", "strict", "description") if name in form}
        return {"type": "json_schema", "json_schema": schema}
    raise APIError(400, f"text.format.type: {form.get('type')!r} — text, json_object or json_schema",
                   param="text.format.type")


def output_items(chat_answer: dict, message_id: str | None = None) -> tuple[list[dict], str]:
    """A chat completion's first choice as output items, and its finish reason; `message_id`: the id a stream has
    already given the message."""
    choice = chat_answer["choices"][0]
    message, items = choice["message"], []
    if message.get("content") or not message.get("tool_calls"):
        item = message_item(message_id or new_item_id("msg"), message.get("content") or "", "completed")
        if choice.get("logprobs") and not message.get("tool_calls"):
            item["content"][0]["logprobs"] = choice["logprobs"]["content"]
        items.append(item)
    for call in message.get("tool_calls") or []:
        items.append({"id": new_item_id("fc"), "type": "function_call", "status": "completed", "call_id": call["id"],
                      "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
    return items, choice["finish_reason"]


def message_item(item_id: str, text: str, status: str) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def response_object(head: dict, output: list[dict], finish_reason: str | None, usage: dict | None) -> dict:
    """The response object: `head` holds the request's echoed settings (model, instructions, tools, ...)."""
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish_reason or "")
    status = "in_progress" if finish_reason is None else ("incomplete" if incomplete else "completed")
    body = {**head, "status": status, "output": output,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "completed_at": int(time.time()) if status == "completed" else None, "usage": None}
    if usage is not None:
        body["usage"] = {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {
            "cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": usage["total_tokens"]}
    return body


class EventStream:
    """The Responses API's stream for one answer: typed events, each with its sequence number."""

    def __init__(self, head: dict):
        self.head, self.sequence = head, 0

    def event(self, kind: str, **fields) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

    async def events(self, deltas: AsyncIterator[tuple[str, list[dict]]], finish) -> AsyncIterator[str]:
        """`deltas`: (text, its tokens' logprobs) as the chat stream produces them; `await finish(message_id)` →
        (output items, finish reason, usage) once the answer is whole, the message under the id its events named:
        the text message streams, function calls come whole at the end."""
        yield self.event("response.created", response=response_object(self.head, [], None, None))
        yield self.event("response.in_progress", response=response_object(self.head, [], None, None))
        message_id, started = new_item_id("msg"), False
        async for delta, logprobs in deltas:
            if not delta:
                continue
            if not started:
                started = True
                yield self.event("response.output_item.added", output_index=0,
                                 item={**message_item(message_id, "", "in_progress"), "content": []})
                yield self.event("response.content_part.added", item_id=message_id, output_index=0, content_index=0,
                                 part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            yield self.event("response.output_text.delta", item_id=message_id, output_index=0, content_index=0,
                             delta=delta, logprobs=logprobs)
        output, finish_reason, usage = await finish(message_id)
        for index, item in enumerate(output):
            if item["type"] == "message":
                part = item["content"][0]
                if not started:
                    yield self.event("response.output_item.added", output_index=index,
                                     item={**item, "status": "in_progress", "content": []})
                    yield self.event("response.content_part.added", item_id=item["id"], output_index=index,
                                     content_index=0, part={**part, "text": ""})
                yield self.event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                                 text=part["text"], logprobs=part["logprobs"])
                yield self.event("response.content_part.done", item_id=item["id"], output_index=index,
                                 content_index=0, part=part)
            else:
                yield self.event("response.output_item.added", output_index=index,
                                 item={**item, "status": "in_progress", "arguments": ""})
                yield self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                 delta=item["arguments"])
                yield self.event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                 name=item["name"], arguments=item["arguments"])
            yield self.event("response.output_item.done", output_index=index, item=item)
        body = response_object(self.head, output, finish_reason, usage)
        yield self.event("response.completed" if body["status"] == "completed" else "response.incomplete", response=body)
