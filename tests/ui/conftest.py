"""A small project with known people, users of every role and API tokens, served live.

The data is written straight into the log (records and events), so the fixture takes well
under a second to build; the read index is built before the server starts."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import start_server
from panorama.config import init_project, load_project

ROLES = ("admin", "marketing", "sales", "support", "analyst")
PASSWORD = "correct-horse-{role}"

ANN = {"customer_id": "C001", "email": "ann.smith@example.com", "phone": "+44 7700 900123",
       "first_name": "Ann", "last_name": "Smith", "birth_date": "1980-05-17",
       "address_line1": "1 High Street", "city": "Leeds", "postal_code": "LS1 4AB"}
BOB = {"customer_id": "C002", "email": "bob.jones@example.org", "phone": "07700 900456",
       "first_name": "Bob", "last_name": "Jones", "birth_date": "1975-01-02",
       "address_line1": "9 Low Road", "city": "York", "postal_code": "YO1 7HH"}
ZOE = {"contact_id": "B001", "account_id": "ACC-1", "company": "Acme Tools Ltd",
       "company_domain": "acme.example", "work_email": "zoe.brown@acme.example",
       "first_name": "Zoë", "last_name": "Brown", "job_title": "Buyer"}
T0 = dt.datetime(2024, 3, 1, 9, 0, 0)


def _ids(*pairs: tuple[str, str]) -> list[dict]:
    return [{"type": t, "value": v} for t, v in pairs]


def _record(source: str, record_id: str, ts: dt.datetime, ids: list[dict], attrs: dict) -> list:
    return [source, record_id, f"h{record_id}", ts, T0, ids, orjson.dumps(attrs).decode(), None, None, None]


def _event(mid: str, kind: str, event: str | None, source: str, ts: dt.datetime, ids: list[dict],
           props: dict | None = None, traits: dict | None = None, user_id: str | None = None,
           group_id: str | None = None, value: float | None = None) -> dict:
    return {"message_id": mid, "type": kind, "event": event, "source": source, "user_id": user_id,
            "anonymous_id": None, "group_id": group_id, "previous_id": None, "timestamp": ts,
            "original_timestamp": None, "sent_at": None, "received_at": ts, "identifiers": ids,
            "traits": orjson.dumps(traits).decode() if traits else None,
            "properties": orjson.dumps(props).decode() if props else None, "context": None,
            "revenue": (props or {}).get("revenue"), "value": value, "file": None, "line": None}


def seed(store) -> None:
    from panorama.ingest.log import append_events

    ann_ids = _ids(("user_id", ANN["customer_id"]), ("email", ANN["email"]), ("phone", ANN["phone"]))
    bob_ids = _ids(("user_id", BOB["customer_id"]), ("email", BOB["email"]), ("phone", BOB["phone"]))
    rows = [
        _record("crm", "C001", T0, ann_ids,
                {k: v for k, v in ANN.items() if k not in ("customer_id", "email", "phone")}),
        _record("crm", "C002", T0, bob_ids,
                {k: v for k, v in BOB.items() if k not in ("customer_id", "email", "phone")}),
        _record("b2b", "B001", T0, _ids(("b2b_contact_id", "B001"), ("email", ZOE["work_email"])),
                {k: v for k, v in ZOE.items() if k not in ("contact_id", "work_email")}),
    ]
    store.con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    events = [
        _event("shop:O1", "track", "Order Completed", "shop", T0 + dt.timedelta(days=1), ann_ids,
               {"order_id": "O1", "revenue": 42.5, "currency": "GBP"}),
        _event("support:T1", "track", "Ticket Opened", "support", T0 + dt.timedelta(days=2),
               _ids(("email", ANN["email"])), {"subject": "Parcel never arrived", "topic": "Delivery",
                                               "status": "solved"}, value=2.0),
        _event("nps:N1", "track", "NPS Survey Answered", "nps", T0 + dt.timedelta(days=3),
               _ids(("email", ANN["email"])), {"comment": "Lovely shoes, slow delivery"}, value=8.0),
    ] + [
        _event(f"web-{i}", "page", None, "web", T0 + dt.timedelta(days=4, minutes=i), ann_ids,
               {"path": f"/p/{i}"}) for i in range(30)
    ]
    append_events(store.cursor(), events)


@dataclass
class UIServer:
    url: str
    project: Path
    server: object
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def store(self):
        return self.server.state.store

    def query(self, sql: str, params=None):
        return self.server.query(sql, params)

    def profile_of(self, email: str) -> str:
        return self.query("SELECT profile_id FROM ui_identifiers WHERE type = 'email' AND value = ?", [email])[0][0]

    def client(self, role: str | None = None) -> Browserish:
        c = Browserish(self.url)
        if role:
            c.sign_in(role, PASSWORD.format(role=role))
        return c

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.tokens[role]}"},
                            timeout=30)


class Browserish:
    """An HTTP client that keeps cookies like a browser does on http://127.0.0.1 (httpx drops
    Secure cookies over plain HTTP; Chromium keeps them on loopback)."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if "Max-Age=0" in header or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers=headers, **kw)
        self._remember(response)
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        if found and path != "/login":
            self.csrf = found.group(1)
        return response

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw) -> httpx.Response:
        data = dict(data or {})
        if csrf and "csrf_token" not in data:
            if self.csrf is None:
                self.get("/me")
            data["csrf_token"] = self.csrf
        return self.request("POST", path, data=data, **kw)

    def sign_in(self, username: str, password: str, expect: int = 303) -> httpx.Response:
        form = self.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        r = self.request("POST", "/login", data={"username": username, "password": password,
                                                 "csrf_token": token, "next": "/"})
        assert r.status_code == expect, r.text[:500]
        if expect == 303:
            self.get("/me")
        return r


# Profiles for these tests: everything that shares an email is one person (a stand-in for
# identity resolution, so that the UI tests do not depend on its rules).
_EVENT_RECORD_ID = ("CASE WHEN starts_with(message_id, source || ':') "
                    "THEN substr(message_id, length(source) + 2) ELSE message_id END")
_MEMBERS = f"""
    SELECT source, record_id, identifiers, attributes,
           'p_' || substr(md5(coalesce(email, source || ':' || record_id)), 1, 12) AS profile_id
    FROM (SELECT source, record_id, identifiers, attributes,
                 lower(list_filter(identifiers, x -> x.type = 'email')[1].value) AS email FROM records
          UNION ALL
          SELECT source, {_EVENT_RECORD_ID}, identifiers, traits,
                 lower(list_filter(identifiers, x -> x.type = 'email')[1].value) FROM events)
"""


def by_email(monkeypatch_like) -> None:
    import panorama.profiles.export as export

    monkeypatch_like.setattr(export, "membership_sql",
                             lambda store: f"SELECT source, record_id, profile_id FROM ({_MEMBERS})")
    monkeypatch_like.setattr(export, "identifiers_sql", lambda store: f"""
        SELECT DISTINCT profile_id, i.type AS type, i.value AS value
        FROM (SELECT profile_id, unnest(identifiers) AS i FROM ({_MEMBERS}))""")
    monkeypatch_like.setattr(export, "profiles_sql", lambda store: f"""
        SELECT profile_id, CAST(any_value(attributes ORDER BY attributes IS NULL) AS VARCHAR) AS attributes
        FROM ({_MEMBERS}) GROUP BY profile_id""")


def build_project(directory: Path) -> dict[str, str]:
    from panorama.auth.tokens import create_token
    from panorama.auth.users import create_user
    from panorama.server.ui.index import build_index
    from panorama.store import open_store

    init_project(directory, name="ui-test", region="GB")
    tokens = {}
    with open_store(load_project(directory).store_path) as store:
        seed(store)
        for role in ROLES:
            create_user(store, role, role, PASSWORD.format(role=role), f"{role.title()} User")
            tokens[role] = create_token(store, f"{role} token", role)[1]
        build_index(store)
    return tokens


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory) -> Iterator[UIServer]:
    directory = tmp_path_factory.mktemp("ui") / "project"
    patch = pytest.MonkeyPatch()
    by_email(patch)
    tokens = build_project(directory)
    server = start_server(directory, {})
    try:
        yield UIServer(server.url, directory, server, tokens)
    finally:
        server.stop()
        patch.undo()
