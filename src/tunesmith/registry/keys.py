"""API keys: only a SHA-256 of the secret is stored; the secret is shown once, when created."""
from __future__ import annotations

import hashlib
import secrets

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now

SECRET_PREFIX = "ts-"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str | None = None) -> tuple[str, str]:
    """Returns (key id, secret). Keys are random 256-bit tokens, so a plain hash is enough (no salt/KDF)."""
    key_id, secret = new_id("key"), SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as tx:
        tx.execute("INSERT INTO api_keys (id, secret_sha256, name, created_at) VALUES (?, ?, ?, ?)",
                   (key_id, hash_secret(secret), name, now()))
        audit.record(tx, key_id, "key.created", key_id, name=name)
    return key_id, secret


def authenticate(db: Database, secret: str) -> str | None:
    """The key id for a secret, or None when it is unknown or revoked."""
    row = db.query_one("SELECT id FROM api_keys WHERE secret_sha256 = ? AND revoked_at IS NULL", (hash_secret(secret),))
    return row["id"] if row else None


def revoke_key(db: Database, key_id: str) -> bool:
    with db.transaction() as tx:
        changed = tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now(), key_id)).rowcount
        if changed:
            audit.record(tx, key_id, "key.revoked", key_id)
    return bool(changed)
