"""Guards in the registry: the most specific one wins, changes are audited, an empty guard is refused."""
import pytest

from tunesmith.registry import audit, guards
from tunesmith.registry.db import Database
from tunesmith.registry.guards import ANY, Guard


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "registry.sqlite")
    yield database
    database.close()


def test_the_most_specific_guard_wins(db):
    assert guards.find_guard(db, "key-a", "chat") is None
    for model, owner, name in [(ANY, ANY, "all"), ("chat", ANY, "model"), (ANY, "key-a", "key"), ("chat", "key-a", "both")]:
        guards.set_guard(db, "os:op", Guard(name, model=model, owner=owner))
    assert guards.find_guard(db, "key-a", "chat").moderation_model == "both"
    assert guards.find_guard(db, "key-a", "other").moderation_model == "key"
    assert guards.find_guard(db, "key-b", "chat").moderation_model == "model"
    assert guards.find_guard(db, "key-b", "other").moderation_model == "all"
    assert guards.remove_guard(db, "os:op", "chat", "key-a")
    assert not guards.remove_guard(db, "os:op", "chat", "key-a")
    assert guards.find_guard(db, "key-a", "chat").moderation_model == "key"


def test_set_replaces_is_audited_and_a_guard_must_screen_something(db):
    guards.set_guard(db, "os:op", Guard("m1", screen_output=False, model="chat"))
    guards.set_guard(db, "os:op", Guard("m2", screen_input=False, model="chat"))
    assert guards.list_guards(db) == [Guard("m2", screen_input=False, screen_output=True, model="chat")]
    with pytest.raises(ValueError, match="screens neither"):
        guards.set_guard(db, "os:op", Guard("m3", screen_input=False, screen_output=False))
    logged = [(e["action"], e["detail"]["moderation_model"]) for e in audit.entries(db, "chat")]
    assert logged == [("guard.set", "m1"), ("guard.set", "m2")]
    assert audit.verify_chain(db) == []
