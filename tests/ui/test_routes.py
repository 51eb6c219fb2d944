"""Every route with every role; CSRF, sign-in, tokens, masking and the audit log, over HTTP."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from panorama.auth.policy import ROLES
from panorama.auth.web import PUBLIC, route_permission

from .conftest import ANN, PASSWORD
from .conftest import ROLES as ROLE_NAMES

pytestmark = pytest.mark.xdist_group("ui")


def _routes(app):
    return [r for r in app.routes if isinstance(r, APIRoute)]


def _fill(path: str, ui) -> str:
    ann = ui.profile_of(ANN["email"])
    values = {"key": ann, "account_id": "ACC-1", "name": "nosuch", "username": "nobody",
              "token_id": "tok_nosuch", "key_id": "wk_nosuch", "version": "x"}  # fmt: skip
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: values[m.group(1)], path)


def test_every_route_is_guarded_or_public(ui_server):
    app = ui_server.server.app
    unguarded = []
    for route in _routes(app):
        if route_permission(route) is None and not route.path.startswith(PUBLIC) and route.path != "/login":
            unguarded.append(route.path)
    assert unguarded == [], f"routes without require(...): {unguarded}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_get_route_with_every_role(ui_server, role):
    app = ui_server.server.app
    browser = ui_server.client(role)
    api = ui_server.api(role)
    checked = 0
    for route in _routes(app):
        found = route_permission(route)
        if found is None or "GET" not in route.methods:
            continue
        _, permission = found
        allowed = permission is None or ROLES[role].can(permission)
        path = _fill(route.path, ui_server)
        is_api = path.startswith("/api/")
        params = {"q": "ann"} if path.endswith("search") else None
        r = (api if is_api else browser.http).get(path, params=params, headers={} if is_api else {
            "cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())})
        if allowed:
            assert r.status_code in (200, 303, 404), (role, path, r.status_code, r.text[:300])
        else:
            assert r.status_code == 403, (role, path, r.status_code)
            if is_api:
                assert r.json()["error"] == "forbidden"
        checked += 1
    assert checked >= 20


def test_anonymous_is_sent_to_sign_in_and_api_needs_a_token(ui_server):
    anon = httpx.Client(base_url=ui_server.url, follow_redirects=False)
    for route in _routes(ui_server.server.app):
        if route_permission(route) is None or "GET" not in route.methods:
            continue
        path = _fill(route.path, ui_server)
        r = anon.get(path)
        if path.startswith("/api/"):
            assert r.status_code == 401, path
        else:
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    bad = httpx.get(ui_server.url + "/api/v1/me", headers={"authorization": "Bearer pat_forged"})
    assert bad.status_code == 401


def test_api_tokens_do_not_open_ui_pages(ui_server):
    r = httpx.get(ui_server.url + "/search", headers={"authorization": f"Bearer {ui_server.tokens['admin']}"},
                  follow_redirects=False)
    assert r.status_code == 303


def test_basic_auth_with_token_as_user_name_like_segment(ui_server):
    r = httpx.get(ui_server.url + "/api/v1/me", auth=(ui_server.tokens["sales"], ""))
    assert r.status_code == 200 and r.json()["role"] == "sales"


def test_forged_and_missing_csrf_are_refused(ui_server):
    admin = ui_server.client("admin")
    form = {"username": "mallory", "role": "admin", "password": "mallory-password"}
    assert admin.post("/admin/users", form, csrf=False).status_code == 403
    assert admin.post("/admin/users", {**form, "csrf_token": "forged"}).status_code == 403
    # another user's valid token is not this session's token
    other = ui_server.client("marketing")
    assert admin.post("/admin/users", {**form, "csrf_token": other.csrf}).status_code == 403
    # a cross-site request with the right token is refused too
    r = admin.post("/admin/users", form, headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    assert ui_server.query("SELECT count(*) FROM auth_users WHERE username = 'mallory'")[0][0] == 0
    # the real thing works
    ok = admin.post("/admin/users", {**form, "username": "carol", "role": "sales"})
    assert ok.status_code == 200 and "Created carol" in ok.text


def test_sign_out_is_a_csrf_protected_post(ui_server):
    c = ui_server.client("sales")
    assert c.post("/logout", csrf=False).status_code == 403
    assert c.post("/logout").status_code == 303
    assert c.get("/search").status_code == 303


def test_sign_in_errors(ui_server):
    c = ui_server.client()
    c.sign_in("sales", "wrong-password!", expect=401)
    form = c.get("/login")
    assert "panorama_login_csrf" in c.cookies
    r = c.request("POST", "/login", data={"username": "sales", "password": PASSWORD.format(role="sales"),
                                          "csrf_token": "forged", "next": "/"})  # fmt: skip
    assert r.status_code == 403
    assert form.status_code == 200


def test_session_cookie_flags(ui_server):
    c = ui_server.client()
    form = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = c.request("POST", "/login", data={"username": "support", "password": PASSWORD.format(role="support"),
                                          "csrf_token": token, "next": "//evil.example/"})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("panorama_session="))
    for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert flag.lower() in cookie.lower()


def test_disabled_user_loses_access_at_once(ui_server):
    admin = ui_server.client("admin")
    admin.post("/admin/users", {"username": "dave", "role": "support", "password": "dave-password-1"})
    dave = ui_server.client()
    dave.sign_in("dave", "dave-password-1")
    assert dave.get("/search").status_code == 200
    assert admin.post("/admin/users/dave/disable").status_code == 200
    assert dave.get("/search").status_code == 303
    dave2 = ui_server.client()
    dave2.sign_in("dave", "dave-password-1", expect=401)


def test_revoked_token_gets_401(ui_server):
    admin = ui_server.client("admin")
    r = admin.post("/admin/tokens", {"name": "temp", "role": "analyst"})
    token = re.search(r'id="new-secret">([^<]+)<', r.text).group(1)
    token_id = re.search(r"id (tok_[0-9a-f]+)\)", r.text).group(1)
    assert httpx.get(ui_server.url + "/api/v1/me", headers={"authorization": f"Bearer {token}"}).status_code == 200
    admin.post(f"/admin/tokens/{token_id}/revoke")
    assert httpx.get(ui_server.url + "/api/v1/me", headers={"authorization": f"Bearer {token}"}).status_code == 401


def test_security_headers_and_static_files(ui_server):
    c = ui_server.client("admin")
    r = c.get("/search")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    for name in ("vendor/htmx.min.js", "vendor/plotly-cartesian.min.js", "app.css"):
        url = re.search(r'(/static/[0-9a-f]+/' + re.escape(name) + ')', r.text + c.get(
            "/profiles/" + ui_server.profile_of(ANN["email"])).text).group(1)
        s = httpx.get(ui_server.url + url, headers={"accept-encoding": "gzip"})
        assert s.status_code == 200 and "immutable" in s.headers["cache-control"]
        assert s.headers.get("content-encoding") == "gzip"
    assert "cdn" not in r.text.lower() and "https://" not in re.sub(r'href="https://[^"]*"', "", r.text)
