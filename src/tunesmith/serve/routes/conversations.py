"""/v1/conversations (OpenAI's Conversations API): a conversation's items kept on the server, created, listed,
added to and deleted through `client.conversations`; `client.responses.create(conversation=ID, ...)` answers with
the conversation as context and appends the request's input and the response's output to it
(serve/routes/responses.py).
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.registry import conversations
from tunesmith.registry.conversations import Conversation
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.responses import input_items
from tunesmith.serve.shapes import list_object

router = APIRouter(prefix="/v1/conversations")
MAX_ITEMS_PER_REQUEST = 20  # OpenAI's limit on items added at once


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    safety_identifier: str | None = None  # who asks: accepted, asks nothing of the server


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, str] | None = Field(max_length=16)


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, Any]] = Field(min_length=1)


def conversation_object(found: Conversation) -> dict:
    return {"id": found.id, "object": "conversation", "created_at": found.created_at, "metadata": found.metadata or {}}


def checked_items(items: list[dict] | None) -> list[dict]:
    if items and len(items) > MAX_ITEMS_PER_REQUEST:
        raise APIError(400, f"items: at most {MAX_ITEMS_PER_REQUEST} at a time — add the rest with "
                            "client.conversations.items.create", param="items", code="invalid_value")
    return input_items(items or [], where="items")


def owned(request: Request, key: str, conversation_id: str) -> Conversation:
    found = conversations.get_conversation(request.app.state.db, key, conversation_id)
    if found is None:
        raise not_found("conversation", conversation_id, param="conversation_id")
    return found


@router.post("")
def create_conversation(request: Request, body: ConversationCreate, key: str = Depends(api_key)):
    return conversation_object(conversations.create_conversation(request.app.state.db, key, body.metadata,
                                                                 checked_items(body.items)))


@router.get("/{conversation_id}")
def retrieve_conversation(request: Request, conversation_id: str, key: str = Depends(api_key)):
    return conversation_object(owned(request, key, conversation_id))


@router.post("/{conversation_id}")
def update_conversation(request: Request, conversation_id: str, body: ConversationUpdate, key: str = Depends(api_key)):
    found = owned(request, key, conversation_id)
    return conversation_object(conversations.update_metadata(request.app.state.db, found, body.metadata))


@router.delete("/{conversation_id}")
def delete_conversation(request: Request, conversation_id: str, key: str = Depends(api_key)):
    conversations.delete_conversation(request.app.state.db, owned(request, key, conversation_id))
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.post("/{conversation_id}/items")
def add_items(request: Request, conversation_id: str, body: ItemsCreate, key: str = Depends(api_key)):
    found = owned(request, key, conversation_id)
    items = checked_items(body.items)
    conversations.add_items(request.app.state.db, found, items)
    return list_object(items, False)


@router.get("/{conversation_id}/items")
def list_items(request: Request, conversation_id: str, after: str | None = None, limit: int = 20,
               order: Literal["asc", "desc"] = "desc", key: str = Depends(api_key)):
    """OpenAI lists a conversation's items newest first by default."""
    found = owned(request, key, conversation_id)
    items, more = conversations.list_items(request.app.state.db, found, after, max(1, min(limit, 100)), order == "desc")
    return list_object(items, more)


@router.get("/{conversation_id}/items/{item_id}")
def retrieve_item(request: Request, conversation_id: str, item_id: str, key: str = Depends(api_key)):
    item = conversations.get_item(request.app.state.db, owned(request, key, conversation_id), item_id)
    if item is None:
        raise not_found("item", item_id, param="item_id")
    return item


@router.delete("/{conversation_id}/items/{item_id}")
def delete_item(request: Request, conversation_id: str, item_id: str, key: str = Depends(api_key)):
    """Answers with the conversation, as OpenAI's does."""
    found = owned(request, key, conversation_id)
    if not conversations.delete_item(request.app.state.db, found, item_id):
        raise not_found("item", item_id, param="item_id")
    return conversation_object(found)
