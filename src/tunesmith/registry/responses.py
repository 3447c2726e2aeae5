"""Stored responses (OpenAI's Responses API with `store`, the default): the response as answered, the input items
it was asked with, and its messages, so `previous_response_id` continues it.

A response that continues another stores only the messages it added (its input and its answer) and a link to the
one before; the conversation up to it is read back along the links (one recursive query), so a chain of N responses
stores N exchanges, not N conversations. A response without a previous one (or whose previous one was deleted before
it was stored) stores the whole conversation it was asked in.

Each key sees only its own. A deleted response is gone (its row removed, audited); the responses that continued it
take its messages into their own first, so their conversations read as before.
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


def _stored(row) -> StoredResponse:
    return StoredResponse(row["id"], row["owner"], row["created_at"], json.loads(row["body"]),
                          json.loads(row["input_items"]))


def store_response(db: Database, owner: str, body: dict, input_items: list[dict], conversation: list[dict],
                   previous_id: str | None = None, added: int = 0) -> None:
    """`conversation`: the chat messages up to and including its answer (instructions not included), of which the
    last `added` are this response's own; with `previous_id` stored (the key's), only those are kept."""
    with db.transaction() as tx:
        linked = previous_id is not None and tx.execute("SELECT 1 FROM responses WHERE id = ? AND owner = ?",
                                                        (previous_id, owner)).fetchone() is not None
        kept = conversation[len(conversation) - added:] if linked else conversation
        tx.execute("INSERT INTO responses (id, owner, created_at, body, input_items, conversation, previous_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (body["id"], owner, now(), json.dumps(body), json.dumps(input_items),
                                                    json.dumps(kept), previous_id if linked else None))


def get_response(db: Database, owner: str, response_id: str) -> StoredResponse | None:
    row = db.query_one("SELECT * FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
    return _stored(row) if row else None


def conversation_of(db: Database, owner: str, response_id: str) -> list[dict] | None:
    """The chat messages up to and including the response's answer, read back along its links; None if the key has
    no such response."""
    rows = db.query("""WITH RECURSIVE chain(previous_id, conversation, depth) AS (
                           SELECT previous_id, conversation, 0 FROM responses WHERE id = ? AND owner = ?
                           UNION ALL
                           SELECT r.previous_id, r.conversation, chain.depth + 1 FROM responses r
                           JOIN chain ON r.id = chain.previous_id AND r.owner = ?)
                       SELECT conversation FROM chain ORDER BY depth DESC""", (response_id, owner, owner))
    if not rows:
        return None
    return [message for row in rows for message in json.loads(row["conversation"])]


def delete_response(db: Database, owner: str, response_id: str, actor: str | None = None,
                    action: str = "response.deleted", **detail) -> bool:
    with db.transaction() as tx:
        row = tx.execute("SELECT previous_id, conversation FROM responses WHERE id = ? AND owner = ?",
                         (response_id, owner)).fetchone()
        if row is None:
            return False
        mine = json.loads(row["conversation"])
        for child in tx.execute("SELECT id, conversation FROM responses WHERE previous_id = ? AND owner = ?",
                                (response_id, owner)).fetchall():  # they take its messages and its link
            tx.execute("UPDATE responses SET conversation = ?, previous_id = ? WHERE id = ?",
                       (json.dumps(mine + json.loads(child["conversation"])), row["previous_id"], child["id"]))
        tx.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
        audit.record(tx, actor or owner, action, response_id, **detail)
    return True


def responses_before(db: Database, cutoff: int) -> list[tuple[str, str]]:
    """(owner, id) of every key's responses stored before `cutoff` (retention)."""
    return [(r["owner"], r["id"]) for r in db.query("SELECT owner, id FROM responses WHERE created_at < ?", (cutoff,))]
