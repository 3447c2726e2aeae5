"""Stored responses (OpenAI's Responses API with `store`, the default): the response as answered, the input items
it was asked with, and the whole conversation up to its answer, so `previous_response_id` continues it.

Each key sees only its own. A deleted response is gone (its row removed, audited); a response that continued it
keeps its own copy of the conversation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, now


@dataclass
class StoredResponse:
    id: str
    owner: str
    created_at: int
    body: dict  # the response object as answered
    input_items: list[dict]  # the items it was asked with, each with its id
    conversation: list[dict]  # chat messages up to and including its answer (instructions not included)


def _stored(row) -> StoredResponse:
    return StoredResponse(row["id"], row["owner"], row["created_at"], json.loads(row["body"]),
                          json.loads(row["input_items"]), json.loads(row["conversation"]))


def store_response(db: Database, owner: str, body: dict, input_items: list[dict], conversation: list[dict]) -> None:
    db.execute("INSERT INTO responses (id, owner, created_at, body, input_items, conversation) VALUES (?, ?, ?, ?, ?, ?)",
               (body["id"], owner, now(), json.dumps(body), json.dumps(input_items), json.dumps(conversation)))


def get_response(db: Database, owner: str, response_id: str) -> StoredResponse | None:
    row = db.query_one("SELECT * FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
    return _stored(row) if row else None


def delete_response(db: Database, owner: str, response_id: str, actor: str | None = None,
                    action: str = "response.deleted", **detail) -> bool:
    with db.transaction() as tx:
        deleted = tx.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)).rowcount
        if deleted:
            audit.record(tx, actor or owner, action, response_id, **detail)
    return bool(deleted)


def responses_before(db: Database, cutoff: int) -> list[tuple[str, str]]:
    """(owner, id) of every key's responses stored before `cutoff` (retention)."""
    return [(r["owner"], r["id"]) for r in db.query("SELECT owner, id FROM responses WHERE created_at < ?", (cutoff,))]
