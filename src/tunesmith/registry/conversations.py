"""Conversations (OpenAI's Conversations API): items kept in order under an id, which a response continues
(`conversation=ID`: its items are the context, and the response's input and output items are appended).

Each key sees only its own. Deleting a conversation deletes its items (audited); an item can be deleted alone.
Items are kept as the Responses API shows them (serve/responses.py: messages, function_call,
function_call_output), each with its id.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, now, page


@dataclass
class Conversation:
    id: str
    owner: str
    created_at: int
    metadata: dict | None


def _conversation(row) -> Conversation:
    return Conversation(row["id"], row["owner"], row["created_at"], json.loads(row["metadata"]) if row["metadata"] else None)


def create_conversation(db: Database, owner: str, metadata: dict | None, items: list[dict]) -> Conversation:
    conversation_id = f"conv_{secrets.token_hex(24)}"
    with db.transaction() as tx:
        tx.execute("INSERT INTO conversations (id, owner, created_at, metadata) VALUES (?, ?, ?, ?)",
                   (conversation_id, owner, now(), json.dumps(metadata) if metadata else None))
        insert_items(tx, conversation_id, owner, items)
        audit.record(tx, owner, "conversation.created", conversation_id, items=len(items))
    return get_conversation(db, owner, conversation_id)


def insert_items(tx, conversation_id: str, owner: str, items: list[dict]) -> None:
    """Appended in order; an item whose id the conversation already holds is that item, sent again (a client
    passing a response's output back as input), and is not appended twice."""
    tx.executemany("INSERT OR IGNORE INTO conversation_items (id, conversation_id, owner, item) VALUES (?, ?, ?, ?)",
                   [(item["id"], conversation_id, owner, json.dumps(item)) for item in items])


def get_conversation(db: Database, owner: str, conversation_id: str) -> Conversation | None:
    row = db.query_one("SELECT * FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner))
    return _conversation(row) if row else None


def update_metadata(db: Database, found: Conversation, metadata: dict | None) -> Conversation:
    db.execute("UPDATE conversations SET metadata = ? WHERE id = ?", (json.dumps(metadata) if metadata else None, found.id))
    return get_conversation(db, found.owner, found.id)


def delete_conversation(db: Database, found: Conversation, actor: str | None = None,
                        action: str = "conversation.deleted", **detail) -> None:
    with db.transaction() as tx:
        items = tx.execute("DELETE FROM conversation_items WHERE conversation_id = ?", (found.id,)).rowcount
        tx.execute("DELETE FROM conversations WHERE id = ?", (found.id,))
        audit.record(tx, actor or found.owner, action, found.id, items=items, **detail)


def add_items(db: Database, found: Conversation, items: list[dict]) -> None:
    with db.transaction() as tx:
        insert_items(tx, found.id, found.owner, items)


def all_items(db: Database, found: Conversation) -> list[dict]:
    rows = db.query("SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY rowid", (found.id,))
    return [json.loads(row["item"]) for row in rows]


def list_items(db: Database, found: Conversation, after: str | None, limit: int, newest_first: bool) -> tuple[list[dict], bool]:
    rows, more = page(db, "conversation_items", "conversation_id = ?", (found.id,), after, limit, newest_first)
    return [json.loads(row["item"]) for row in rows], more


def get_item(db: Database, found: Conversation, item_id: str) -> dict | None:
    row = db.query_one("SELECT item FROM conversation_items WHERE id = ? AND conversation_id = ?", (item_id, found.id))
    return json.loads(row["item"]) if row else None


def delete_item(db: Database, found: Conversation, item_id: str) -> bool:
    return bool(db.execute("DELETE FROM conversation_items WHERE id = ? AND conversation_id = ?", (item_id, found.id)))


def conversations_before(db: Database, cutoff: int) -> list[Conversation]:
    """Every key's conversations created before `cutoff` (retention)."""
    return [_conversation(r) for r in db.query("SELECT * FROM conversations WHERE created_at < ?", (cutoff,))]
