"""Users of the web UI: argon2id-hashed passwords, one role each, disabled rather than deleted
(the audit log keeps referring to them)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from panorama.auth.policy import role as check_role
from panorama.ingest.log import utcnow
from panorama.store import Store, one

_hasher = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) defaults
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
# verified when the user does not exist, so an unknown name costs the same time as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    display_name: str | None
    role: str
    created_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


_COLS = "user_id, username, display_name, role, created_at, disabled_at, last_login_at"


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise UserError("the password starts or ends with whitespace")


def create_user(store: Store, username: str, role: str, password: str,
                display_name: str | None = None) -> User:  # fmt: skip
    if not _USERNAME.match(username):
        raise UserError(f"username {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    try:
        check_role(role)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_password(password)
    if get_user(store, username) is not None:
        raise UserError(f"user {username!r} exists already")
    user = User("u_" + secrets.token_hex(6), username, display_name or username, role, utcnow(),
                None, None)  # fmt: skip
    store.execute(
        "INSERT INTO auth_users (user_id, username, display_name, role, password_hash, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [user.user_id, user.username, user.display_name, user.role, _hasher.hash(password),
         user.created_at],
    )
    return user


def get_user(store: Store, username_or_id: str) -> User | None:
    row = one(store.execute(
        f"SELECT {_COLS} FROM auth_users WHERE username = ? OR user_id = ?",
        [username_or_id, username_or_id],
    ))
    return User(*row) if row else None


def list_users(store: Store) -> list[User]:
    return [User(*r) for r in store.execute(f"SELECT {_COLS} FROM auth_users ORDER BY username").fetchall()]


def disable_user(store: Store, username: str) -> User:
    user = get_user(store, username)
    if user is None:
        raise UserError(f"no user {username!r} (see `panorama users list`)")
    if not user.active:
        raise UserError(f"user {username!r} was already disabled at {user.disabled_at:%Y-%m-%d %H:%M} UTC")
    now = utcnow()
    with store.transaction() as cur:
        cur.execute("UPDATE auth_users SET disabled_at = ? WHERE user_id = ?", [now, user.user_id])
        cur.execute("UPDATE auth_sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                    [now, user.user_id])
    return get_user(store, user.user_id)  # type: ignore[return-value]


def enable_user(store: Store, username: str) -> User:
    user = get_user(store, username)
    if user is None:
        raise UserError(f"no user {username!r} (see `panorama users list`)")
    store.execute("UPDATE auth_users SET disabled_at = NULL WHERE user_id = ?", [user.user_id])
    return get_user(store, user.user_id)  # type: ignore[return-value]


def set_password(store: Store, username: str, password: str) -> None:
    user = get_user(store, username)
    if user is None:
        raise UserError(f"no user {username!r} (see `panorama users list`)")
    check_password(password)
    with store.transaction() as cur:
        cur.execute("UPDATE auth_users SET password_hash = ? WHERE user_id = ?",
                    [_hasher.hash(password), user.user_id])
        cur.execute("UPDATE auth_sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                    [utcnow(), user.user_id])


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (same cost either way)."""
    row = one(store.execute(
        f"SELECT {_COLS}, password_hash FROM auth_users WHERE username = ?", [username]
    ))
    stored = row[-1] if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    user = User(*row[:-1])
    if not user.active:
        return None
    now = utcnow()
    if _hasher.check_needs_rehash(stored):
        store.execute("UPDATE auth_users SET password_hash = ? WHERE user_id = ?",
                      [_hasher.hash(password), user.user_id])
    store.execute("UPDATE auth_users SET last_login_at = ? WHERE user_id = ?", [now, user.user_id])
    return user
