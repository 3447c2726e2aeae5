"""API keys: only a SHA-256 of the secret is stored; the secret is shown once, when created.

Each key carries its personal-data policy for uploads (`refuse`, `redact` or `allow`; see
data/pii_policy.py): an operator sets it per key, since one team may upload redacted support logs and
another public documentation.
"""
from __future__ import annotations

import hashlib
import secrets

from tunesmith.registry import audit
from tunesmith.registry.db import Database, new_id, now

SECRET_PREFIX = "ts-"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str | None = None, pii_policy: str = "refuse", actor: str | None = None) -> tuple[str, str]:
    """Returns (key id, secret). Keys are random 256-bit tokens, so a plain hash is enough (no salt/KDF).

    `actor` is who created it (`os:USER` from the command line); the key itself when nobody is named."""
    key_id, secret = new_id("key"), SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as tx:
        tx.execute("INSERT INTO api_keys (id, secret_sha256, name, created_at, pii_policy) VALUES (?, ?, ?, ?, ?)",
                   (key_id, hash_secret(secret), name, now(), pii_policy))
        audit.record(tx, actor or key_id, "key.created", key_id, name=name, pii_policy=pii_policy)
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


def authenticate(db: Database, secret: str) -> str | None:
    """The key id for a secret, or None when it is unknown or revoked."""
    row = db.query_one("SELECT id FROM api_keys WHERE secret_sha256 = ? AND revoked_at IS NULL", (hash_secret(secret),))
    return row["id"] if row else None


def revoke_key(db: Database, key_id: str, actor: str | None = None) -> bool:
    with db.transaction() as tx:
        changed = tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now(), key_id)).rowcount
        if changed:
            audit.record(tx, actor or key_id, "key.revoked", key_id)
    return bool(changed)
