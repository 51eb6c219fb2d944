"""Write keys for the HTTP Tracking API (migrations 200-299).

A write key belongs to one source; events sent with it are stored under that source.
Only the SHA-256 of a key is stored (keys are 192-bit random tokens, so a fast hash is
as good as a slow one); `prefix` keeps the first characters so people can tell keys apart.
"""

from __future__ import annotations

from panorama.store.schema import Migration

_WRITE_KEYS_V200 = """
CREATE TABLE write_keys (
    id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    key_hash VARCHAR NOT NULL UNIQUE,
    prefix VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
"""

MIGRATIONS: list[Migration] = [Migration(200, "write keys for the HTTP API", _WRITE_KEYS_V200)]
