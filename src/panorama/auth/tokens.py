"""Read tokens for the REST API: `pat_` + 32 URL-safe random characters (192 bits), one role
each, shown once at creation; only the SHA-256 is stored (a random token needs no slow hash)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from panorama.auth.policy import role as check_role
from panorama.ingest.log import utcnow
from panorama.store import Store, one

TOKEN_PREFIX = "pat_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    name: str
    role: str
    prefix: str
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_COLS = "token_id, name, role, prefix, created_by, created_at, revoked_at"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, name: str, role: str, created_by: str | None = None) -> tuple[ApiToken, str]:
    """A new API token; returns the record and the token itself (shown once)."""
    if not _NAME.match(name):
        raise TokenError(f"token name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-'")
    try:
        check_role(role)
    except ValueError as exc:
        raise TokenError(str(exc)) from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    record = ApiToken("tok_" + secrets.token_hex(4), name, role, token[:8], created_by, utcnow(), None)
    store.execute(
        "INSERT INTO auth_tokens (token_id, name, role, token_hash, prefix, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [record.token_id, name, role, hash_token(token), record.prefix, created_by, record.created_at],
    )
    return record, token


def list_tokens(store: Store, include_revoked: bool = True) -> list[ApiToken]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    rows = store.execute(f"SELECT {_COLS} FROM auth_tokens {where} ORDER BY created_at, token_id").fetchall()
    return [ApiToken(*r) for r in rows]


def revoke_token(store: Store, token_id: str) -> ApiToken:
    row = one(store.execute(f"SELECT {_COLS} FROM auth_tokens WHERE token_id = ?", [token_id]))
    if row is None:
        raise TokenError(f"no API token with id {token_id!r} (see `panorama tokens list`)")
    record = ApiToken(*row)
    if record.revoked_at is not None:
        raise TokenError(f"API token {token_id} was already revoked at {record.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    now = utcnow()
    store.execute("UPDATE auth_tokens SET revoked_at = ? WHERE token_id = ?", [now, token_id])
    return ApiToken(*row[:-1], now)


def lookup_token(store: Store, token: str) -> ApiToken | None:
    """The active token's record, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = one(store.execute(
        f"SELECT {_COLS} FROM auth_tokens WHERE token_hash = ? AND revoked_at IS NULL", [hash_token(token)]
    ))
    return ApiToken(*row) if row else None
