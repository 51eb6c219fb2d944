"""Write keys: create, list, revoke, and look up (the HTTP API's authentication).

A key is `pk_` + 32 URL-safe random characters (192 bits). It is shown once, at creation;
the store keeps its SHA-256 only. The server keeps the non-revoked keys in memory
(`KeyRing`) and re-reads them from the store every few seconds, so a revocation made through
the same process takes effect at once and any other within seconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from panorama.ingest.log import utcnow
from panorama.store import Store, one

KEY_PREFIX = "pk_"
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class WriteKeyError(ValueError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class WriteKey:
    id: str
    source: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: Store, source: str) -> tuple[WriteKey, str]:
    """A new write key for `source`; returns the record and the key itself (shown once)."""
    if not _SOURCE_NAME.match(source):
        raise WriteKeyError(f"source name {source!r}: use 1-64 letters, digits, '_' or '-'")
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    record = WriteKey(
        id="wk_" + secrets.token_hex(4), source=source, prefix=key[:8], created_at=utcnow()
    )
    store.execute(
        "INSERT INTO write_keys (id, source, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)",
        [record.id, record.source, hash_key(key), record.prefix, record.created_at],
    )
    return record, key


def list_keys(store: Store, include_revoked: bool = True) -> list[WriteKey]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    rows = store.execute(
        f"SELECT id, source, prefix, created_at, revoked_at FROM write_keys {where} "
        "ORDER BY created_at, id"
    ).fetchall()
    return [WriteKey(*row) for row in rows]


def revoke_key(store: Store, key_id: str) -> WriteKey:
    """Revoke a key by id; revoking a revoked key is an error that says when it was revoked."""
    row = one(store.execute(
        "SELECT id, source, prefix, created_at, revoked_at FROM write_keys WHERE id = ?", [key_id]
    ))
    if row is None:
        raise WriteKeyError(f"no write key with id {key_id!r} (see `panorama keys list`)")
    record = WriteKey(*row)
    if record.revoked_at is not None:
        raise WriteKeyError(
            f"write key {key_id} was already revoked at {record.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    now = utcnow()
    store.execute("UPDATE write_keys SET revoked_at = ? WHERE id = ?", [now, key_id])
    return WriteKey(record.id, record.source, record.prefix, record.created_at, now)


class KeyRing:
    """The keys in memory: `lookup(key)` costs one SHA-256 and a dict lookup.

    `reload()` re-reads the table (a few rows); the server calls it from a worker thread
    when `stale()`, so revocations and new keys take effect within seconds."""

    def __init__(self, store: Store, refresh_seconds: float = 5.0):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._active: dict[str, WriteKey] = {}
        self._revoked: dict[str, WriteKey] = {}
        self._loaded_at = 0.0
        self.reload()

    def reload(self) -> None:
        rows = self.store.execute(
            "SELECT key_hash, id, source, prefix, created_at, revoked_at FROM write_keys"
        ).fetchall()
        active, revoked = {}, {}
        for key_hash, *fields in rows:
            record = WriteKey(*fields)
            (active if record.active else revoked)[key_hash] = record
        self._active, self._revoked = active, revoked  # swapped whole: safe for readers
        self._loaded_at = time.monotonic()

    def stale(self, max_age: float | None = None) -> bool:
        age = self.refresh_seconds if max_age is None else max_age
        return time.monotonic() - self._loaded_at > age

    def lookup(self, key: str) -> WriteKey | None:
        """The active key's record, or None (unknown or revoked)."""
        return self._active.get(hash_key(key))

    def revoked(self, key: str) -> WriteKey | None:
        return self._revoked.get(hash_key(key))

    def __len__(self) -> int:
        return len(self._active)
