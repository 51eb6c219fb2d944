"""Users, sessions, tokens, audit and the role policy, against a real store."""

from __future__ import annotations

import pytest

from panorama.auth import audit, sessions, tokens, users
from panorama.auth.policy import (
    HIDDEN,
    MODES,
    PERMISSIONS,
    PII_CLASSES,
    ROLES,
    Masker,
    pii_class,
    role,
)
from panorama.auth.service import AuthService, RateLimited
from panorama.config import init_project, load_project
from panorama.store import open_store


@pytest.fixture
def store(tmp_path):
    init_project(tmp_path / "p", name="t")
    with open_store(load_project(tmp_path / "p").store_path) as s:
        yield s


def test_password_is_argon2id_hashed_and_checked(store):
    users.create_user(store, "ann", "support", "a-long-password")
    stored = store.scalar("SELECT password_hash FROM auth_users WHERE username = 'ann'")
    assert stored.startswith("$argon2id$") and "a-long-password" not in stored
    assert users.authenticate(store, "ann", "a-long-password").role == "support"
    assert users.authenticate(store, "ann", "wrong-password") is None
    assert users.authenticate(store, "nobody", "a-long-password") is None


@pytest.mark.parametrize(("name", "role_name", "password", "message"), [
    ("ann", "boss", "a-long-password", "unknown role"),
    ("ann", "admin", "short", "too short"),
    ("bad name!", "admin", "a-long-password", "username"),
])
def test_create_user_refuses_bad_input(store, name, role_name, password, message):
    with pytest.raises(users.UserError, match=message):
        users.create_user(store, name, role_name, password)


def test_duplicate_user_refused(store):
    users.create_user(store, "ann", "admin", "a-long-password")
    with pytest.raises(users.UserError, match="exists"):
        users.create_user(store, "ann", "sales", "a-long-password")


def test_disabling_a_user_ends_sessions_and_sign_in(store):
    user = users.create_user(store, "ann", "sales", "a-long-password")
    session_id, _ = sessions.create_session(store, user)
    assert sessions.get_session(store, session_id) is not None
    users.disable_user(store, "ann")
    assert sessions.get_session(store, session_id) is None
    assert users.authenticate(store, "ann", "a-long-password") is None
    users.enable_user(store, "ann")
    assert users.authenticate(store, "ann", "a-long-password") is not None


def test_session_ids_are_stored_hashed(store):
    user = users.create_user(store, "ann", "sales", "a-long-password")
    session_id, session = sessions.create_session(store, user)
    assert store.scalar("SELECT count(*) FROM auth_sessions WHERE session_hash = ?", [session_id]) == 0
    assert session.csrf_token and session.csrf_token != session_id
    sessions.revoke_session(store, session_id)
    assert sessions.get_session(store, session_id) is None


def test_tokens_shown_once_stored_hashed_and_revocable(store):
    record, token = tokens.create_token(store, "crm sync", "analyst")
    assert token.startswith("pat_") and len(token) > 30
    assert store.scalar("SELECT count(*) FROM auth_tokens WHERE token_hash = ?", [token]) == 0
    assert tokens.lookup_token(store, token).role == "analyst"
    tokens.revoke_token(store, record.token_id)
    assert tokens.lookup_token(store, token) is None
    with pytest.raises(tokens.TokenError, match="already revoked"):
        tokens.revoke_token(store, record.token_id)


def test_sign_in_is_rate_limited_and_audited(store):
    users.create_user(store, "ann", "admin", "a-long-password")
    service = AuthService(store, max_failures=3)
    for _ in range(3):
        assert service.sign_in("ann", "nope-nope-nope", "10.0.0.1") is None
    with pytest.raises(RateLimited):
        service.sign_in("ann", "a-long-password", "10.0.0.1")
    # another address is not blocked
    session_id, principal = service.sign_in("ann", "a-long-password", "10.0.0.2")
    assert principal.role.name == "admin" and service.session(session_id) == principal
    actions = [e.action for e in audit.entries(store)]
    assert actions.count("sign_in_failed") == 3 and "sign_in" in actions
    service.sign_out(session_id, principal)
    assert service.session(session_id) is None


def test_csrf_compare(store):
    users.create_user(store, "ann", "admin", "a-long-password")
    service = AuthService(store)
    _, principal = service.sign_in("ann", "a-long-password")
    assert service.csrf_ok(principal, principal.csrf_token)
    assert not service.csrf_ok(principal, "forged")
    assert not service.csrf_ok(principal, None)


def test_policy_is_complete():
    assert set(ROLES) == {"admin", "marketing", "sales", "support", "analyst"}
    assert ROLES["admin"].permissions == frozenset(PERMISSIONS)
    for r in ROLES.values():
        assert set(r.pii) == set(PII_CLASSES) and set(r.pii.values()) <= set(MODES)
    only_admin = {"users.manage", "keys.manage", "profiles.delete", "audit.view"}
    for r in ROLES.values():
        if r.name != "admin":
            assert not (r.permissions & only_admin), r.name
    assert ROLES["support"].can("tickets.view") and ROLES["support"].mode("contact") == "clear"
    assert all(m in ("pseudonym", "hidden") for m in ROLES["analyst"].pii.values())


@pytest.mark.parametrize(("field", "cls"), [
    ("email", "contact"), ("customer_email", "contact"), ("work_email", "contact"), ("phone", "contact"),
    ("first_name", "name"), ("lastName", "name"), ("ship_name", None), ("full_name", "name"),
    ("postal_code", "address"), ("address_line1", "address"), ("city", "address"),
    ("birth_date", "birth"), ("ip", "device"), ("anonymous_id", "device"), ("userAgent", "device"),
    ("comment", "free_text"), ("subject", "free_text"), ("revenue", None), ("category", None),
    ("product_name", None), ("campaign_name", None),
])
def test_pii_classes(field, cls):
    assert pii_class(field) == cls


def test_masking_modes():
    secret = b"k" * 32
    analyst = Masker(role("analyst"), secret)
    assert analyst.value("contact", "ann@example.com").startswith("anon:")
    assert analyst.value("contact", "Ann@Example.com ") == analyst.value("contact", "ann@example.com")
    assert analyst.value("birth", "1980-05-17") == HIDDEN
    marketing = Masker(role("marketing"), secret)
    assert marketing.value("contact", "ann@example.com") == "ann@example.com"
    assert marketing.value("birth", "1980-05-17") == "\u2022\u2022\u2022\u2022-05-17"
    assert marketing.value("address", "LS1 4AB").startswith("LS1 ")
    assert marketing.value("free_text", "my parcel") == HIDDEN
    tree = analyst.tree({"email": "a@b.c", "revenue": 3, "nested": {"phone": "123456789", "ok": 1}})
    assert tree["revenue"] == 3 and tree["nested"]["ok"] == 1
    assert tree["email"].startswith("anon:") and tree["nested"]["phone"].startswith("anon:")
