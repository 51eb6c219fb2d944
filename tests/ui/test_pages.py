"""What each role sees: search, the 360° profile, the timeline, masking, the audit log, the API."""

from __future__ import annotations

import pytest

from .conftest import ANN, BOB, ZOE

pytestmark = pytest.mark.xdist_group("ui")


def test_search_by_name_email_phone_and_fuzzy(ui_server):
    api = ui_server.api("support")
    ann = ui_server.profile_of(ANN["email"])
    for q in ("Ann Smith", "ann smyth", "smith", "ann.smith@example.com", "ann.smi", "07700 900123",
              "+447700900123", "C001", ann):
        hits = api.get("/api/v1/search", params={"q": q}).json()["data"]
        assert hits and hits[0]["profile_id"] == ann, q
    assert api.get("/api/v1/search", params={"q": "Bob"}).json()["data"][0]["name"] == "Bob Jones"
    assert api.get("/api/v1/search", params={"q": "zoe brown"}).json()["data"][0]["name"] == "Zoë Brown"
    assert api.get("/api/v1/search", params={"q": "nobody-here"}).json()["data"] == []


def test_analysts_search_by_ids_only_and_see_pseudonyms(ui_server):
    api = ui_server.api("analyst")
    assert api.get("/api/v1/search", params={"q": "Ann Smith"}).json()["data"] == []
    assert api.get("/api/v1/search", params={"q": ANN["email"]}).json()["data"] == []
    hits = api.get("/api/v1/search", params={"q": "C001"}).json()["data"]
    assert hits and hits[0]["name"].startswith("anon:") and hits[0]["email"].startswith("anon:")


def test_profile_page_shows_everything_to_support(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    page = ui_server.client("support").get(f"/profiles/{ann}")
    assert page.status_code == 200
    text = page.text
    for expected in ("Ann Smith", ANN["email"], ANN["phone"], "Leeds", "Parcel never arrived", "Timeline",
                     "Golden record", "Identifiers", "crm", "Lovely shoes"):
        assert expected in text, expected
    assert "Your role does not see predictions" in text


def test_profile_by_identifier_redirects_to_the_profile(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    c = ui_server.client("sales")
    r = c.get(f"/profiles/email:{ANN['email']}")
    assert r.status_code == 303 and r.headers["location"] == f"/profiles/{ann}"
    assert c.get("/profiles/email:nobody@nowhere.example").status_code == 404


def test_marketing_sees_no_ticket_text_and_partial_address(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    text = ui_server.client("marketing").get(f"/profiles/{ann}").text
    assert ANN["email"] in text and "Ann Smith" in text
    assert "Parcel never arrived" not in text and "Lovely shoes" not in text
    assert 'id="tickets"' not in text
    assert "1 High Street" not in text and "1980-05-17" not in text


def test_analyst_sees_no_personal_data_anywhere(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    text = ui_server.client("analyst").get(f"/profiles/{ann}").text
    for secret in ("Ann", "Smith", ANN["email"], "900123", "1 High Street", "LS1 4AB", "1980", "Lovely shoes",
                   "Parcel never arrived"):
        assert secret not in text, secret
    assert "anon:" in text
    data = ui_server.api("analyst").get(f"/api/v1/profiles/{ann}").json()
    flat = str(data)
    for secret in ("Smith", ANN["email"], "900123", "High Street", "1980-05-17"):
        assert secret not in flat, secret


def test_timeline_is_paged_and_filterable(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    api = ui_server.api("admin")
    first = api.get(f"/api/v1/profiles/{ann}/events", params={"limit": 25}).json()
    assert len(first["data"]) == 25 and first["cursor"]["has_more"]
    second = api.get(f"/api/v1/profiles/{ann}/events", params={"limit": 25, "next": first["cursor"]["next"]}).json()
    assert len(second["data"]) == 8 and not second["cursor"]["has_more"]
    ids = [e["message_id"] for e in first["data"] + second["data"]]
    assert len(set(ids)) == 33
    times = [e["timestamp"] for e in first["data"] + second["data"]]
    assert times == sorted(times, reverse=True)
    shop = api.get(f"/api/v1/profiles/{ann}/events", params={"source": "shop"}).json()["data"]
    assert [e["event"] for e in shop] == ["Order Completed"]
    nps = api.get(f"/api/v1/profiles/{ann}/events", params={"type": "NPS Survey Answered"}).json()["data"]
    assert len(nps) == 1
    c = ui_server.client("support")
    frag = c.get(f"/profiles/{ann}/timeline", params={"source": "support"}).text
    assert "Ticket Opened" in frag and "Page" not in frag
    more = c.get(f"/profiles/{ann}/timeline", params={"more": "true", "before": "2024-03-05T09:10:00"}).text
    assert more.count('class="tl-event"') == 10 + 3


def test_segment_profile_api_shapes(ui_server):
    api = ui_server.api("sales")
    key = f"email:{ANN['email']}"
    traits = api.get(f"/api/v1/profiles/{key}/traits").json()
    assert traits["traits"]["first_name"] == "Ann" and traits["cursor"]["has_more"] is False
    ext = api.get(f"/api/v1/profiles/{key}/external_ids").json()["data"]
    assert {"id": ANN["email"], "type": "email", "collection": "users", "encoding": "none"} in ext
    assert api.get(f"/api/v1/profiles/user_id:{BOB['customer_id']}/traits").json()["traits"]["last_name"] == "Jones"
    assert api.get("/api/v1/profiles/email:nobody@x.example/traits").status_code == 404
    zoe = api.get(f"/api/v1/profiles/email:{ZOE['work_email']}/links").json()["data"]
    assert zoe[0]["external_ids"][0]["id"] == "ACC-1"
    account = api.get("/api/v1/accounts/ACC-1").json()
    assert account["name"] == "Acme Tools Ltd" and account["contacts"][0]["name"] == "Zoë Brown"


def test_every_profile_view_is_audited(ui_server):
    ann = ui_server.profile_of(ANN["email"])
    before = ui_server.query("SELECT count(*) FROM audit_log WHERE action = 'profile_view' AND profile_id = ?", [ann])[0][0]
    ui_server.client("support").get(f"/profiles/{ann}")
    ui_server.api("sales").get(f"/api/v1/profiles/{ann}/traits")
    rows = ui_server.query(
        "SELECT actor, actor_kind, role FROM audit_log WHERE action = 'profile_view' AND profile_id = ? "
        "ORDER BY id DESC LIMIT 2", [ann])
    assert ui_server.query("SELECT count(*) FROM audit_log WHERE action = 'profile_view' AND profile_id = ?",
                           [ann])[0][0] == before + 2
    assert rows[0] == ("sales token", "token", "sales") and rows[1] == ("support", "user", "support")
    page = ui_server.client("admin").get("/admin/audit", params={"profile": ann}).text
    assert "profile_view" in page and "support" in page


def test_account_page_and_sources_page(ui_server):
    c = ui_server.client("admin")
    r = c.get("/accounts/ACC-1")
    assert r.status_code == 200 and "Acme Tools Ltd" in r.text and "Zoë Brown" in r.text
    s = c.get("/sources")
    assert s.status_code == 200 and "Ingestion status" in s.text and "crm" in s.text
    new = c.post("/sources/keys", {"source": "kiosk"})
    assert new.status_code == 200 and "pk_" in new.text
    assert ui_server.server.state.keys is not None


def test_dashboards_render(ui_server):
    c = ui_server.client("marketing")
    r = c.get("/dashboards")
    assert r.status_code == 200 and "Dashboards" in r.text
    m = c.get("/dashboards/metrics")
    assert m.status_code == 200
