"""Stored responses keep each exchange once: a continuation stores its own messages and a link, the conversation is
read back along the links, and deleting a response anywhere in a chain leaves every later one's conversation whole."""
import json

from tunesmith.registry import audit, responses
from tunesmith.registry.db import Database


def exchange(n: int) -> list[dict]:
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


def store(db, response_id: str, previous: str | None, n: int) -> None:
    earlier = responses.conversation_of(db, "key", previous) if previous else []
    responses.store_response(db, "key", {"id": response_id}, [], earlier + exchange(n), previous, added=2)


def kept(db, response_id: str) -> list[dict]:
    return json.loads(db.query_one("SELECT conversation FROM responses WHERE id = ?", (response_id,))["conversation"])


def test_a_chain_stores_each_exchange_once_and_survives_deletes_anywhere(tmp_path):
    db = Database(tmp_path / "registry.sqlite")
    for n, (response_id, previous) in enumerate([("r1", None), ("r2", "r1"), ("r3", "r2"), ("r4", "r3")]):
        store(db, response_id, previous, n)
    whole = [message for n in range(4) for message in exchange(n)]
    assert responses.conversation_of(db, "key", "r4") == whole
    assert [len(kept(db, r)) for r in ("r1", "r2", "r3", "r4")] == [2, 2, 2, 2]
    assert responses.conversation_of(db, "other key", "r4") is None  # another key's chain is not found

    assert responses.delete_response(db, "key", "r2")  # in the middle: r3 takes its exchange and its link
    assert responses.conversation_of(db, "key", "r4") == whole and len(kept(db, "r3")) == 4
    assert responses.delete_response(db, "key", "r1")  # the head
    assert responses.delete_response(db, "key", "r4")  # the tail
    assert responses.conversation_of(db, "key", "r3") == whole[:6]
    assert [row["id"] for row in db.query("SELECT id FROM responses")] == ["r3"]
    assert not responses.delete_response(db, "key", "r2")  # gone already
    assert [e["object_id"] for e in audit.entries(db) if e["action"] == "response.deleted"] == ["r2", "r1", "r4"]


def test_a_continuation_of_a_response_deleted_meanwhile_stores_its_whole_conversation(tmp_path):
    db = Database(tmp_path / "registry.sqlite")
    store(db, "r1", None, 0)
    earlier = responses.conversation_of(db, "key", "r1")
    responses.delete_response(db, "key", "r1")  # between reading its conversation and storing the answer
    responses.store_response(db, "key", {"id": "r2"}, [], earlier + exchange(1), "r1", added=2)
    assert responses.conversation_of(db, "key", "r2") == exchange(0) + exchange(1)
    assert db.query_one("SELECT previous_id FROM responses WHERE id = 'r2'")["previous_id"] is None
