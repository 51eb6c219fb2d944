"""What the running server uses: sign-in with rate limiting, sessions and API tokens resolved
to a `Principal` (cached briefly), CSRF checks, maskers and the audit log.

The caches only hold what this process wrote or read; every change made through this service
(sign-out, disabling a user, revoking a token) clears them, and entries expire after
`cache_seconds` in any case."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque

from panorama.auth import audit, sessions, tokens, users
from panorama.auth.policy import ROLES, Masker, Principal
from panorama.ingest.log import utcnow
from panorama.store import Store, one

PSEUDONYM_SECRET = "pseudonym_key"


def project_secret(store: Store, name: str) -> bytes:
    """A random per-project secret, created on first use."""
    row = one(store.execute("SELECT value FROM auth_secrets WHERE name = ?", [name]))
    if row is None:
        store.execute("INSERT INTO auth_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                      [name, secrets.token_hex(32), utcnow()])
        row = one(store.execute("SELECT value FROM auth_secrets WHERE name = ?", [name]))
    return bytes.fromhex(row[0])


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed sign-ins; try again in {retry_after} s")
        self.retry_after = retry_after


class AuthService:
    def __init__(self, store: Store, cache_seconds: float = 10.0, max_failures: int = 5,
                 failure_window: float = 300.0):  # fmt: skip
        self.store = store
        self.cache_seconds = cache_seconds
        self.max_failures = max_failures
        self.failure_window = failure_window
        self._secret = project_secret(store, PSEUDONYM_SECRET)
        self._maskers = {name: Masker(r, self._secret) for name, r in ROLES.items()}
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[float, Principal | None]] = {}
        self._tokens: dict[str, tuple[float, Principal | None]] = {}
        self._failures: dict[str, deque[float]] = {}

    # -- maskers and audit ----------------------------------------------------------------

    def masker(self, principal: Principal) -> Masker:
        return self._maskers[principal.role.name]

    def audit(self, principal: Principal | None, action: str, profile_id: str | None = None,
              detail: dict | None = None, ip: str | None = None, actor: str | None = None) -> None:  # fmt: skip
        audit.record(self.store, principal, action, profile_id, detail, ip, actor)

    # -- sign-in ----------------------------------------------------------------------------

    def _limit_key(self, username: str, ip: str | None) -> str:
        return f"{ip or '-'}|{username.lower()}"

    def _check_rate(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            window = self._failures.get(key)
            while window and now - window[0] > self.failure_window:
                window.popleft()
            if window and len(window) >= self.max_failures:
                raise RateLimited(int(self.failure_window - (now - window[0])) + 1)

    def sign_in(self, username: str, password: str, ip: str | None = None,
                user_agent: str | None = None) -> tuple[str, Principal] | None:  # fmt: skip
        """(session id, principal) for good credentials, None for bad ones; RateLimited after
        `max_failures` failures for the same name from the same address within the window."""
        key = self._limit_key(username, ip)
        self._check_rate(key)
        user = users.authenticate(self.store, username, password)
        if user is None:
            with self._lock:
                self._failures.setdefault(key, deque()).append(time.monotonic())
            self.audit(None, "sign_in_failed", detail={"username": username[:64]}, ip=ip, actor=username[:64])
            return None
        with self._lock:
            self._failures.pop(key, None)
        session_id, session = sessions.create_session(self.store, user, ip, user_agent)
        principal = self._principal(session)
        self.audit(principal, "sign_in", ip=ip)
        return session_id, principal

    def sign_out(self, session_id: str, principal: Principal | None = None, ip: str | None = None) -> None:
        sessions.revoke_session(self.store, session_id)
        with self._lock:
            self._sessions.pop(sessions.hash_session(session_id), None)
        if principal is not None:
            self.audit(principal, "sign_out", ip=ip)

    @staticmethod
    def _principal(session: sessions.Session) -> Principal:
        return Principal("user", session.user_id, session.username, ROLES[session.role], session.csrf_token)

    def session(self, session_id: str | None) -> Principal | None:
        if not session_id or len(session_id) > 200:
            return None
        key = sessions.hash_session(session_id)
        now = time.monotonic()
        hit = self._sessions.get(key)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        session = sessions.get_session(self.store, session_id)
        principal = self._principal(session) if session else None
        with self._lock:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[key] = (now, principal)
        return principal

    def token(self, token: str | None) -> Principal | None:
        if not token or len(token) > 200:
            return None
        key = tokens.hash_token(token)
        now = time.monotonic()
        hit = self._tokens.get(key)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        record = tokens.lookup_token(self.store, token)
        principal = Principal("token", record.token_id, record.name, ROLES[record.role]) if record else None
        with self._lock:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[key] = (now, principal)
        return principal

    @staticmethod
    def csrf_ok(principal: Principal, submitted: str | None) -> bool:
        return bool(principal.csrf_token and submitted) and hmac.compare_digest(
            principal.csrf_token.encode(), str(submitted).encode()
        )

    # -- administration (clears the caches) ------------------------------------------------

    def forget(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._tokens.clear()

    def create_user(self, actor: Principal, username: str, role: str, password: str,
                    display_name: str | None = None, ip: str | None = None) -> users.User:  # fmt: skip
        user = users.create_user(self.store, username, role, password, display_name)
        self.audit(actor, "user_created", detail={"username": username, "role": role}, ip=ip)
        return user

    def disable_user(self, actor: Principal, username: str, ip: str | None = None) -> users.User:
        if actor.kind == "user" and username in (actor.name, actor.id):
            raise users.UserError("you cannot disable yourself")
        user = users.disable_user(self.store, username)
        self.forget()
        self.audit(actor, "user_disabled", detail={"username": user.username}, ip=ip)
        return user

    def enable_user(self, actor: Principal, username: str, ip: str | None = None) -> users.User:
        user = users.enable_user(self.store, username)
        self.forget()
        self.audit(actor, "user_enabled", detail={"username": user.username}, ip=ip)
        return user

    def create_token(self, actor: Principal, name: str, role: str, ip: str | None = None):
        record, token = tokens.create_token(self.store, name, role, actor.name)
        self.audit(actor, "token_created", detail={"token_id": record.token_id, "role": role}, ip=ip)
        return record, token

    def revoke_token(self, actor: Principal, token_id: str, ip: str | None = None):
        record = tokens.revoke_token(self.store, token_id)
        self.forget()
        self.audit(actor, "token_revoked", detail={"token_id": token_id}, ip=ip)
        return record
