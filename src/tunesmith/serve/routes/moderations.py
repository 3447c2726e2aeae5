"""/v1/moderations: OpenAI's request and response, answered by a classification fine-tune.

`input` is a string (one result), a list of strings (one result each), or a list of content parts
`{"type": "text", "text": ...}` that together make one input (one result, its text parts joined by
newlines, as OpenAI treats a multi-modal input). Image parts are refused: the models here read text.
"""
from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunesmith.registry.keys import ApiKey
from tunesmith.serve.auth import calling_key
from tunesmith.serve.errors import APIError
from tunesmith.serve.moderation import ALIASES, load_moderation_model, moderate

router = APIRouter(prefix="/v1")


class ModerationRequest(BaseModel):
    input: str | list[str | dict]
    model: str = ALIASES[0]  # OpenAI's default


def input_texts(given: str | list[str | dict]) -> list[str]:
    """The texts to score, one per result."""
    if isinstance(given, str):
        return [given]
    if not given:
        raise APIError(400, "Invalid value for input: the list is empty — send a string, strings, or text parts.",
                       param="input", code="invalid_value")
    if all(isinstance(item, str) for item in given):
        return list(given)
    if any(isinstance(item, str) for item in given):
        raise APIError(400, "Invalid value for input: mixes strings and content parts — send one kind.",
                       param="input", code="invalid_value")
    return ["\n".join(part_text(index, part) for index, part in enumerate(given))]


def part_text(index: int, part: dict) -> str:
    kind = part.get("type")
    if kind == "image_url":
        raise APIError(400, f"input[{index}]: image inputs are not supported — tunesmith's moderation models read "
                            "text only; send {\"type\": \"text\", \"text\": ...} parts.",
                       param=f"input[{index}]", code="unsupported_input")
    if kind != "text" or not isinstance(part.get("text"), str):
        raise APIError(400, f"input[{index}]: expected {{\"type\": \"text\", \"text\": STRING}}, got type {kind!r}.",
                       param=f"input[{index}]", code="invalid_value")
    return part["text"]


@router.post("/moderations")
def create_moderation(request: Request, body: ModerationRequest, calling: ApiKey = Depends(calling_key)):
    """Counts against the key's requests in flight (serve/limits.py), like a completion; not its tokens."""
    reservation = request.app.state.limits.admit(calling, 0)
    try:
        return moderation_object(request.app.state, calling.id, body)
    finally:
        reservation.release()


def moderation_object(state, key: str, body: ModerationRequest) -> dict:
    """The answer to one moderation request for this key (the route's; a batch's runner calls it too)."""
    texts = input_texts(body.input)
    served = load_moderation_model(state.classifiers, state.db, state.settings, body.model, owner=key)
    return {"id": f"modr-{secrets.token_hex(12)}", "model": body.model,
            "results": [verdict.result_object() for verdict in moderate(served, texts)]}
