"""Deletion through the REST API of a running server (admin session with CSRF; other roles,
API tokens and anonymous callers refused), and the HTTP Tracking API refusing a deleted
person's messages from then on — with everybody else's still stored."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from conftest import start_server
from panorama.config import load_project
from panorama.ingest.keys import create_key
from panorama.store import open_store

from .conftest import ANN, BOB

pytestmark = pytest.mark.xdist_group("privacy")

ROLES = ("admin", "marketing", "analyst")


class Session:
    def __init__(self, url: str, username: str, password: str):
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        form = self.http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        cookies = {c.name: c.value for c in self.http.cookies.jar}
        r = self.http.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                           "next": "/"}, headers=self._cookie(cookies))  # fmt: skip
        assert r.status_code == 303, r.text[:300]
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            cookies[name] = rest.split(";", 1)[0].strip('"')
        self.cookies = cookies
        me = self.http.get("/me", headers=self._cookie(cookies))
        self.csrf = re.search(r'name="csrf_token" value="([^"]+)"', me.text).group(1)

    @staticmethod
    def _cookie(cookies: dict) -> dict:
        return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

    def post(self, path: str, csrf: bool = True) -> httpx.Response:
        headers = self._cookie(self.cookies)
        if csrf:
            headers["x-csrf-token"] = self.csrf
        return self.http.post(path, headers=headers)


@pytest.fixture
def server(project):
    from panorama.auth.tokens import create_token
    from panorama.auth.users import create_user

    with open_store(load_project(project).store_path) as store:
        key = create_key(store, "app")[1]
        tokens = {}
        for role in ROLES:
            create_user(store, role, role, f"pw-{role}-0123456789", role)
            tokens[role] = create_token(store, f"{role} token", role)[1]
    live = start_server(project, {"app": key})
    live.tokens = tokens
    try:
        yield live
    finally:
        live.stop()


def _send(server, messages: list[dict]) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/batch", json={"batch": messages}, auth=(server.write_key, ""), timeout=30
    )


def test_delete_through_the_api_then_the_tracking_api_refuses_her(server):
    url = server.url
    key = f"email:{ANN['email']}"
    # anonymous, other roles and read tokens may not delete; analysts may not even export
    assert httpx.post(f"{url}/api/v1/privacy/{key}/delete").status_code == 401
    assert httpx.get(f"{url}/api/v1/privacy/{key}/export").status_code == 401
    marketing = Session(url, "marketing", "pw-marketing-0123456789")
    assert marketing.post(f"/api/v1/privacy/{key}/delete").status_code == 403
    analyst = httpx.get(f"{url}/api/v1/privacy/{key}/export",
                        headers={"authorization": f"Bearer {server.tokens['analyst']}"})  # fmt: skip
    assert analyst.status_code == 403 and analyst.json()["error"] == "forbidden"
    token_delete = httpx.post(f"{url}/api/v1/privacy/{key}/delete",
                              headers={"authorization": f"Bearer {server.tokens['admin']}"})  # fmt: skip
    assert token_delete.status_code in (401, 403)
    admin = Session(url, "admin", "pw-admin-0123456789")
    assert admin.post(f"/api/v1/privacy/{key}/delete", csrf=False).status_code == 403
    assert server.query("SELECT count(*) FROM events WHERE user_id = ?", [ANN["id"]])[0][0] > 0

    # an admin token may export (a read)
    export = httpx.get(f"{url}/api/v1/privacy/{key}/export",
                       headers={"authorization": f"Bearer {server.tokens['admin']}"}, timeout=30)  # fmt: skip
    assert export.status_code == 200 and len(export.json()["events"]) == 6

    r = admin.post(f"/api/v1/privacy/{key}/delete")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tombstones"] >= 5 and body["rows"]["events"] == 6
    assert httpx.get(f"{url}/api/v1/privacy/{key}/export",
                     headers={"authorization": f"Bearer {server.tokens['admin']}"}).status_code == 404  # fmt: skip

    # the SDKs keep sending: her messages (by any of her identifiers) are answered 200 and
    # dropped; Bob's are stored; a bad message of hers leaves no dead letter
    dead_before = server.query("SELECT count(*) FROM dead_letters")[0][0]
    r = _send(server, [
        {"type": "track", "userId": ANN["id"], "event": "Viewed", "messageId": "h1"},
        {"type": "identify", "anonymousId": "new-device-1", "traits": {"email": ANN["email"].upper()},
         "messageId": "h2"},
        {"type": "track", "anonymousId": ANN["anon"], "event": "Viewed", "messageId": "h3"},
        {"type": "identify", "userId": "C-NEW", "traits": {"phone": "07700 900123"}, "messageId": "h4"},
        {"type": "track", "userId": ANN["id"], "event": "Viewed", "timestamp": "not a time", "messageId": "h5"},
        {"type": "track", "userId": BOB["id"], "event": "Viewed", "messageId": "h6"},
    ])  # fmt: skip
    assert r.status_code == 200 and [x["messageId"] for x in r.json()["rejected"]] == ["h5"]
    single = httpx.post(url + "/v1/track", json={"userId": ANN["id"], "event": "Viewed", "messageId": "h7"},
                        auth=(server.write_key, ""))  # fmt: skip
    assert single.status_code == 200 and single.json() == {"success": True}
    stored = {
        r[0] for r in server.query("SELECT message_id FROM events WHERE message_id LIKE 'h%'")
    }
    assert stored == {"h6"}
    assert server.query("SELECT count(*) FROM dead_letters")[0][0] == dead_before
    # after the deletion and the messages that followed, the running server's store holds no trace
    from panorama.privacy.subject import trace

    ann_values = [
        ANN["id"],
        ANN["email"],
        ANN["anon"],
        ANN["loyalty"],
        ANN["phone"].replace(" ", ""),
    ]
    time.sleep(1.5)  # the real-time stages have handled the batches above
    assert trace(server.state.store, ann_values) == {}
    audit = server.query("SELECT actor, profile_id, CAST(detail AS VARCHAR) FROM audit_log "
                         "WHERE action = 'privacy_delete'")  # fmt: skip
    assert len(audit) == 1 and audit[0][0] == "admin" and audit[0][1] is None
    assert ANN["email"] not in audit[0][2] and ANN["id"] not in audit[0][2]


def test_admin_page_exports_and_deletes(server):
    url = server.url
    admin = Session(url, "admin", "pw-admin-0123456789")
    page = admin.http.get("/admin/privacy", headers=admin._cookie(admin.cookies))
    assert page.status_code == 200 and 'action="/admin/privacy/delete"' in page.text
    assert 'href="/admin/privacy"' in page.text  # in the navigation
    marketing = Session(url, "marketing", "pw-marketing-0123456789")
    assert (
        marketing.http.get(
            "/admin/privacy", headers=marketing._cookie(marketing.cookies)
        ).status_code
        == 403
    )
    assert (
        'href="/admin/privacy"'
        not in marketing.http.get("/me", headers=marketing._cookie(marketing.cookies)).text
    )

    download = admin.http.get("/admin/privacy/export", params={"key": f"email:{BOB['email']}"},
                              headers=admin._cookie(admin.cookies))  # fmt: skip
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert {e["message_id"] for e in download.json()["events"]} >= {"shop:O20", "w2a"}

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"key": f"email:{BOB['email']}", "confirm": "nope", "csrf_token": csrf}
    refused = admin.http.post(
        "/admin/privacy/delete", data=form, headers=admin._cookie(admin.cookies)
    )
    assert refused.status_code == 400 and "type DELETE" in refused.text
    assert server.query("SELECT count(*) FROM events WHERE user_id = ?", [BOB["id"]])[0][0] > 0
    done = admin.http.post("/admin/privacy/delete", data={**form, "confirm": "DELETE"},
                           headers=admin._cookie(admin.cookies))  # fmt: skip
    assert done.status_code == 200 and "Deleted (dsr_" in done.text
    assert server.query("SELECT count(*) FROM events WHERE user_id = ?", [BOB["id"]])[0][0] == 0
    again = admin.http.post("/admin/privacy/delete", data={**form, "confirm": "DELETE"},
                            headers=admin._cookie(admin.cookies))  # fmt: skip
    assert again.status_code == 404 and "no profile matches" in again.text
