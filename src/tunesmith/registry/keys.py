"""API keys: only a SHA-256 of the secret is stored; the secret is shown once, when created.

Each key carries its personal-data policy for uploads (`refuse`, `redact` or `allow`; see
data/pii_policy.py): an operator sets it per key, since one team may upload redacted support logs and
another public documentation.

Each key has a scope, what it may do (read-only, inference-only, fine-tune: everything), and may carry its own
limits (requests at once, tokens per minute, unfinished jobs) over the server's defaults. Every request looks
its key up again, so a revoked key gets 401 at once.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now

SECRET_PREFIX = "ts-"
SCOPES = {
    "fine-tune": "everything: uploads, fine-tuning jobs, models, inference, reads",
    "inference-only": "completions, chat completions, responses and moderations, and reads",
    "read-only": "reads (GET) only",
}
LIMITS = ("max_concurrent", "tokens_per_minute", "max_queued_jobs")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str | None
    created_at: int
    revoked_at: int | None
    pii_policy: str
    scope: str
    max_concurrent: int | None  # None: the server's default
    tokens_per_minute: int | None
    max_queued_jobs: int | None


def _key(row) -> ApiKey:
    return ApiKey(row["id"], row["name"], row["created_at"], row["revoked_at"], row["pii_policy"], row["scope"],
                  row["max_concurrent"], row["tokens_per_minute"], row["max_queued_jobs"])


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str | None = None, pii_policy: str = "refuse", actor: str | None = None,
               scope: str = "fine-tune") -> tuple[str, str]:
    """Returns (key id, secret). Keys are random 256-bit tokens, so a plain hash is enough (no salt/KDF).

    `actor` is who created it (`os:USER` from the command line); the key itself when nobody is named."""
    if scope not in SCOPES:
        raise ValueError(f"scope: unknown scope {scope!r} — use one of {', '.join(SCOPES)}")
    key_id, secret = new_id("key"), SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as tx:
        tx.execute("INSERT INTO api_keys (id, secret_sha256, name, created_at, pii_policy, scope) VALUES (?, ?, ?, ?, ?, ?)",
                   (key_id, hash_secret(secret), name, now(), pii_policy, scope))
        audit.record(tx, actor or key_id, "key.created", key_id, name=name, pii_policy=pii_policy, scope=scope)
    return key_id, secret


def pii_policy(db: Database, key_id: str) -> str:
    row = db.query_one("SELECT pii_policy FROM api_keys WHERE id = ?", (key_id,))
    return row["pii_policy"] if row else "refuse"


def set_pii_policy(db: Database, key_id: str, policy: str, actor: str) -> bool:
    """False when there is no such (unrevoked) key."""
    with db.transaction() as tx:
        row = tx.execute("SELECT pii_policy FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)).fetchone()
        if row is None:
            return False
        tx.execute("UPDATE api_keys SET pii_policy = ? WHERE id = ?", (policy, key_id))
        audit.record(tx, actor, "key.pii_policy_changed", key_id, previous=row["pii_policy"], policy=policy)
    return True


def find_key(db: Database, secret: str) -> ApiKey | None:
    """The key for a secret, or None when it is unknown or revoked."""
    row = db.query_one("SELECT * FROM api_keys WHERE secret_sha256 = ? AND revoked_at IS NULL", (hash_secret(secret),))
    return _key(row) if row else None


def authenticate(db: Database, secret: str) -> str | None:
    """The key id for a secret, or None when it is unknown or revoked."""
    key = find_key(db, secret)
    return key.id if key else None


def list_keys(db: Database) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return [_key(row) for row in db.query("SELECT * FROM api_keys ORDER BY rowid")]


def set_scope(db: Database, key_id: str, scope: str, actor: str) -> bool:
    """False when there is no such (unrevoked) key."""
    if scope not in SCOPES:
        raise ValueError(f"scope: unknown scope {scope!r} — use one of {', '.join(SCOPES)}")
    with db.transaction() as tx:
        row = tx.execute("SELECT scope FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)).fetchone()
        if row is None:
            return False
        tx.execute("UPDATE api_keys SET scope = ? WHERE id = ?", (scope, key_id))
        audit.record(tx, actor, "key.scope_changed", key_id, previous=row["scope"], scope=scope)
    return True


def set_limits(db: Database, key_id: str, limits: dict[str, int | None], actor: str) -> bool:
    """Set the named limits (LIMITS; None = the server's default); False when there is no such (unrevoked) key."""
    unknown = set(limits) - set(LIMITS)
    if unknown:
        raise ValueError(f"limits: unknown {', '.join(sorted(unknown))} — use {', '.join(LIMITS)}")
    with db.transaction() as tx:
        if tx.execute("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)).fetchone() is None:
            return False
        for name, value in limits.items():  # names checked against LIMITS above
            tx.execute(f"UPDATE api_keys SET {name} = ? WHERE id = ?", (value, key_id))
        audit.record(tx, actor, "key.limits_changed", key_id, **limits)
    return True


def revoke_key(db: Database, key_id: str, actor: str | None = None) -> bool:
    with db.transaction() as tx:
        changed = tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now(), key_id)).rowcount
        if changed:
            audit.record(tx, actor or key_id, "key.revoked", key_id)
    return bool(changed)
