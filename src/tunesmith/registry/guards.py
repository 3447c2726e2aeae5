"""Guards: which moderation model screens a served model's prompts and answers, for which keys.

A guard is an operator's setting (`tunesmith guard set`), not a key's: a key must not switch off the
screening put in front of it. Each guard applies to one served model or to all (`model = "*"`) and to one
key or to all (`owner = "*"`); for a request the most specific guard wins, in the order
(key, model) > (key, *) > (*, model) > (*, *), and the server's `--guard` default applies only when no
row matches. `moderation_model` is what /v1/moderations takes: an `ft:` id of a classification fine-tune
(any key's: the operator chose it), a moderation alias such as `omni-moderation-latest` (the server's
`--moderation-model`), or a classifier directory.
"""
from __future__ import annotations

from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, now

ANY = "*"


@dataclass(frozen=True)
class Guard:
    moderation_model: str  # an ft: id, a moderation alias, or a classifier directory
    screen_input: bool = True  # refuse a flagged prompt
    screen_output: bool = True  # cut a flagged answer with finish_reason "content_filter"
    model: str = ANY  # the served model it applies to
    owner: str = ANY  # the API key it applies to


def _guard(row) -> Guard:
    return Guard(row["moderation_model"], bool(row["screen_input"]), bool(row["screen_output"]), row["model"], row["owner"])


def set_guard(db: Database, actor: str, guard: Guard) -> None:
    """Create or replace the guard for (guard.model, guard.owner)."""
    if not (guard.screen_input or guard.screen_output):
        raise ValueError("screen: a guard that screens neither input nor output does nothing — use `guard remove`")
    with db.transaction() as tx:
        tx.execute("INSERT OR REPLACE INTO guards (model, owner, moderation_model, screen_input, screen_output, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (guard.model, guard.owner, guard.moderation_model,
                                                 int(guard.screen_input), int(guard.screen_output), now()))
        audit.record(tx, actor, "guard.set", guard.model, owner=guard.owner, moderation_model=guard.moderation_model,
                     screen_input=guard.screen_input, screen_output=guard.screen_output)


def remove_guard(db: Database, actor: str, model: str, owner: str) -> bool:
    with db.transaction() as tx:
        removed = tx.execute("DELETE FROM guards WHERE model = ? AND owner = ?", (model, owner)).rowcount
        if removed:
            audit.record(tx, actor, "guard.removed", model, owner=owner)
    return bool(removed)


def list_guards(db: Database) -> list[Guard]:
    return [_guard(row) for row in db.query("SELECT * FROM guards ORDER BY model, owner")]


def find_guard(db: Database, owner: str, model: str) -> Guard | None:
    """The most specific guard for this key's request to this model, or None."""
    rows = db.query("SELECT * FROM guards WHERE model IN (?, ?) AND owner IN (?, ?)", (model, ANY, owner, ANY))
    ranked = sorted(rows, key=lambda row: (row["owner"] == ANY, row["model"] == ANY))
    return _guard(ranked[0]) if ranked else None
