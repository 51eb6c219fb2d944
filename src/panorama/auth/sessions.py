"""Browser sessions: a random 256-bit id in a cookie (HttpOnly, SameSite=Lax, Secure), its
SHA-256 in the store with the session's CSRF token and expiry. Signing out, disabling the user
or changing the password revokes it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from panorama.auth.users import User
from panorama.ingest.log import utcnow
from panorama.store import Store, one

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    session_hash: str
    user_id: str
    username: str
    display_name: str | None
    role: str
    csrf_token: str
    expires_at: datetime


def hash_session(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def create_session(store: Store, user: User, ip: str | None = None, user_agent: str | None = None,
                   lifetime: timedelta = SESSION_LIFETIME) -> tuple[str, Session]:  # fmt: skip
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session = Session(hash_session(session_id), user.user_id, user.username, user.display_name,
                      user.role, secrets.token_urlsafe(32), now + lifetime)  # fmt: skip
    store.execute(
        "INSERT INTO auth_sessions (session_hash, user_id, csrf_token, created_at, expires_at, ip, user_agent) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [session.session_hash, user.user_id, session.csrf_token, now, session.expires_at, ip,
         (user_agent or "")[:300]],
    )
    return session_id, session


def get_session(store: Store, session_id: str) -> Session | None:
    """The live session (not expired, not revoked, user active), or None."""
    row = one(store.execute(
        """SELECT s.session_hash, s.user_id, u.username, u.display_name, u.role, s.csrf_token, s.expires_at
           FROM auth_sessions s JOIN auth_users u USING (user_id)
           WHERE s.session_hash = ? AND s.revoked_at IS NULL AND u.disabled_at IS NULL
             AND s.expires_at > ?""",
        [hash_session(session_id), utcnow()],
    ))
    return Session(*row) if row else None


def revoke_session(store: Store, session_id: str) -> None:
    store.execute("UPDATE auth_sessions SET revoked_at = ? WHERE session_hash = ? AND revoked_at IS NULL",
                  [utcnow(), hash_session(session_id)])
