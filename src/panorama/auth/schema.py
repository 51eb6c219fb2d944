"""Tables of the auth module (migrations 700-799).

- `auth_users`: people who sign in to the web UI (argon2id password hashes, one role each).
- `auth_sessions`: signed-in browser sessions; only the SHA-256 of the session id is stored,
  with the session's CSRF token and its expiry.
- `auth_tokens`: read tokens for the REST API (SHA-256 stored; shown once), one role each.
- `audit_log`: append-only record of who did what: every profile view, sign-ins, user and
  token management.
- `auth_secrets`: per-project random secrets (the key that pseudonymises PII for analysts).
"""

from __future__ import annotations

from panorama.store.schema import Migration

_V700 = """
CREATE TABLE auth_users (
    user_id VARCHAR PRIMARY KEY,
    username VARCHAR NOT NULL UNIQUE,
    display_name VARCHAR,
    role VARCHAR NOT NULL,
    password_hash VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    disabled_at TIMESTAMP,
    last_login_at TIMESTAMP
);

CREATE TABLE auth_sessions (
    session_hash VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    csrf_token VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    ip VARCHAR,
    user_agent VARCHAR
);

CREATE TABLE auth_tokens (
    token_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    token_hash VARCHAR NOT NULL UNIQUE,
    prefix VARCHAR NOT NULL,
    created_by VARCHAR,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE SEQUENCE audit_log_ids START 1;
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('audit_log_ids'),
    logged_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    actor_kind VARCHAR NOT NULL,
    role VARCHAR,
    action VARCHAR NOT NULL,
    profile_id VARCHAR,
    detail JSON,
    ip VARCHAR
);

CREATE TABLE auth_secrets (
    name VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
"""

MIGRATIONS: list[Migration] = [
    Migration(700, "auth: users, sessions, API tokens, audit log, secrets", _V700),
]
