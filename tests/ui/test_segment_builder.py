"""The segment builder over HTTP: live count and validation errors (the same checks as
`panorama segments check`), saving into panorama.yaml through the running server (backfilled
at once, then kept current in real time), members, CSV export, triggers, roles and CSRF."""

from __future__ import annotations

import csv
import io
import time

import httpx
import yaml

from panorama.config import load_project

PREVIEW = "/segments/preview"


def test_live_count_and_errors_name_the_closest_column(ui_server):
    c = ui_server.client("marketing")
    page = c.get("/segments")
    assert page.status_code == 200 and 'href="/segments/new"' in page.text
    builder = c.get("/segments/new")
    assert builder.status_code == 200
    assert 'hx-get="/segments/preview"' in builder.text and 'name="csrf_token"' in builder.text
    assert (
        "<code>last_seen_at</code>" in builder.text and "performed" in builder.text
    )  # the reference list

    typo = c.get(PREVIEW, params={"expression": "last_sen_at IS NOT NULL"})
    assert typo.status_code == 200 and 'id="seg-error"' in typo.text
    assert "last_sen_at" in typo.text and "did you mean last_seen_at" in typo.text

    bad_syntax = c.get(PREVIEW, params={"expression": "orders >= AND"})
    assert 'id="seg-error"' in bad_syntax.text

    everyone = c.get(PREVIEW, params={"expression": "last_seen_at IS NOT NULL"})
    total = ui_server.query(f"SELECT count(*) FROM ({_catalog(ui_server).universe_sql})")[0][0]
    assert f'<strong id="seg-count">{total}</strong>' in everyone.text and total > 1
    buyers = c.get(PREVIEW, params={"expression": "performed('Order Completed') >= 1"})
    assert '<strong id="seg-count">1</strong>' in buyers.text


def _catalog(ui_server):
    from panorama.segments.realtime import runtime_for

    return runtime_for(ui_server.store).segset.catalog


def _members(ui_server, name):
    return {r[0] for r in ui_server.query(
        "SELECT profile_id FROM segment_membership WHERE segment = ? AND exited_at IS NULL", [name])}  # fmt: skip


def test_save_backfills_and_real_time_keeps_it_current(ui_server):
    from panorama.ingest.keys import create_key

    c = ui_server.client("marketing")
    form = {
        "name": "buyers",
        "expression": "performed('Order Completed') >= 1",
        "description": "Bought once",
    }
    assert c.post("/segments", form, csrf=False).status_code == 403  # no CSRF token
    forged = dict(form, csrf_token="x" * 40)
    assert c.post("/segments", forged, csrf=False).status_code == 403
    typo = c.post("/segments", dict(form, expression="perfomed('Order Completed') >= 1"))
    assert typo.status_code == 400 and "did you mean performed" in typo.text
    assert "buyers" not in load_project(ui_server.project).config.segments

    saved = c.post("/segments", form)
    assert saved.status_code == 303 and saved.headers["location"].startswith(
        "/segments/buyers?saved="
    )
    config = load_project(ui_server.project).config
    assert config.segments["buyers"].where == form["expression"]
    assert config.segments["buyers"].description == "Bought once"
    assert len(_members(ui_server, "buyers")) == 1  # backfilled by the server at once

    detail = c.get(saved.headers["location"])
    assert detail.status_code == 200 and 'id="saved"' in detail.text
    assert (
        '<dd id="seg-total">1</dd>' in detail.text
        and "No trigger acts on this segment" in detail.text
    )
    listing = c.get("/segments")
    assert 'href="/segments/buyers"' in listing.text

    # a name taken by another segment is refused; the existing one is edited in place
    assert c.post("/segments", dict(form, expression="true")).status_code == 400
    edited = c.post("/segments", dict(form, existing="1", expression="performed('Order Completed') >= 1 "
                                                                       "OR performed('Ticket Opened') >= 1"))  # fmt: skip
    assert edited.status_code == 303
    assert len(_members(ui_server, "buyers")) == 2

    # real time: a new order puts its customer in the segment within seconds
    state = ui_server.server.state
    _, key = create_key(state.store, "shop")
    state.keys.reload()
    r = httpx.post(ui_server.url + "/v1/track", auth=(key, ""), json={
        "userId": "RT-1", "event": "Order Completed", "messageId": "rt-1", "properties": {"revenue": 5}})  # fmt: skip
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60  # the segments thread runs beside other work
    while "RT-1" not in _members(ui_server, "buyers") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "RT-1" in _members(ui_server, "buyers")
    assert ui_server.query("SELECT entered_by FROM segment_membership WHERE segment = 'buyers' "
                           "AND profile_id = 'RT-1'")[0][0] == "realtime"  # fmt: skip

    export = c.get("/segments/buyers/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["profile_id"] for r in rows} == _members(ui_server, "buyers")
    # the rest of panorama.yaml is as it was (the round trip keeps it)
    text = (ui_server.project / "panorama.yaml").read_text()
    assert "# Panorama project configuration" in text
    assert yaml.safe_load(text)["name"] == "ui-test"


def test_roles_that_may_not_edit(ui_server):
    c = ui_server.client("marketing")
    c.post(
        "/segments",
        {"name": "lapsed", "expression": "performed('Order Completed', within='30d') = 0"},
    )
    for role in ("support", "sales"):
        s = ui_server.client(role)
        assert s.get("/segments").status_code == 200
        assert 'href="/segments/new"' not in s.get("/segments").text
        assert s.get("/segments/new").status_code == 403
        assert s.get(PREVIEW, params={"expression": "true"}).status_code == 403
        assert s.post("/segments", {"name": "x", "expression": "true"}).status_code == 403
        page = s.get("/segments/lapsed")
        assert page.status_code == 200 and 'action="/segments"' not in page.text
        assert "may look at segments but not edit them" in page.text
    assert "x" not in load_project(ui_server.project).config.segments
    analyst = ui_server.client("analyst")  # analysts may edit (segments.edit)
    assert analyst.get("/segments/new").status_code == 200
    assert ui_server.client("admin").get("/segments/nope").status_code == 404


def test_triggers_of_a_segment_are_shown(ui_server):
    from panorama.segments.editor import triggers_for

    path = ui_server.project / "panorama.yaml"
    data = yaml.safe_load(path.read_text())
    data["segments"] = {"vip": "performed('Order Completed') >= 1"}
    data["destinations"] = {
        "crm_hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s" * 32}
    }
    data["triggers"] = {"vip_welcome": {"segment": "vip", "on": "enter", "destinations": ["crm_hook"],
                                        "description": "Welcome VIPs"}}  # fmt: skip
    from panorama.config import parse_config

    config = parse_config(data)
    assert triggers_for(config, "vip") == [{"name": "vip_welcome", "on": "enter", "destinations": ["crm_hook"],
                                            "description": "Welcome VIPs", "types": ["webhook"]}]  # fmt: skip
    assert triggers_for(config, "other") == []
    state = ui_server.server.state
    before = state.project.config
    state.project.config = config  # as the server holds it after a start with this file
    try:
        page = ui_server.client("support").get("/segments/vip")
    finally:
        state.project.config = before
    assert page.status_code == 200
    assert (
        "vip_welcome" in page.text
        and "crm_hook (webhook)" in page.text
        and "Welcome VIPs" in page.text
    )
    assert "read-only here" in page.text


def test_live_count_is_estimated_on_a_sample_at_scale(ui_server):
    """With identity resolution (profile ids shared by the segments catalog and the read
    index) and more profiles than the sample size, the count is estimated on a random sample
    of the read index's profiles, their events read from the index."""
    from dataclasses import replace

    from panorama.segments.editor import preview

    catalog = replace(_catalog(ui_server), mode="resolved")
    profiles = ui_server.query("SELECT profile_id FROM ui_profiles")
    assert len(profiles) == 3
    everyone = preview(ui_server.store, catalog, "performed() >= 0", sample_profiles=2)
    assert (everyone.sampled, everyone.profiles, everyone.members) == (2, 3, 3)
    assert set(everyone.sample) <= {p for (p,) in profiles} and len(everyone.sample) == 2
    ann = ui_server.profile_of("ann.smith@example.com")
    buyers = preview(
        ui_server.store, catalog, "performed('Order Completed', where='revenue > 40') >= 1",
        sample_profiles=2,
    )  # fmt: skip
    assert buyers.ok and buyers.sampled == 2
    assert buyers.members == (2 if ann in buyers.sample else 0)  # 1 of 2 sampled, scaled to 3
    exact = preview(ui_server.store, catalog, "performed() >= 0", sample_profiles=10)
    assert exact.sampled is None  # fewer profiles than the sample size: counted over all


def test_sampled_count_reads_attributes_from_the_read_index(ui_server, monkeypatch):
    """Resolved identities (stand-in: grouped by email, as the read index is): a condition on
    a golden-record attribute, counted exactly over all and estimated on a sample."""
    import panorama.identity.export as identity_export
    import panorama.profiles.export as profiles_export
    from panorama.segments.catalog import build_catalog
    from panorama.segments.editor import _index_catalog, preview

    monkeypatch.setattr(identity_export, "membership_sql", profiles_export.membership_sql)
    monkeypatch.setattr(identity_export, "profiles_sql", profiles_export.profiles_sql)
    catalog = build_catalog(ui_server.store)
    assert catalog.mode == "resolved" and "city" in catalog.columns
    ann = ui_server.profile_of("ann.smith@example.com")
    exact = preview(ui_server.store, catalog, "city = 'Leeds'", sample_profiles=10)
    everyone = ui_server.query(f"SELECT count(*) FROM ({catalog.universe_sql})")[0][0]
    assert (exact.members, exact.profiles, exact.sample, exact.sampled) == (
        1,
        everyone,
        [ann],
        None,
    )
    index = _index_catalog(ui_server.store, catalog)
    assert index.source("profile").sql == "SELECT profile_id, attributes FROM ui_profiles"
    from panorama.ingest.log import utcnow
    from panorama.segments.engine import check_expression, evaluation_sql

    compiled = check_expression(
        ui_server.store, "city = 'Leeds' AND performed('Order Completed')", catalog
    )
    on_index = evaluation_sql(
        index, {"x": compiled}, "SELECT profile_id FROM ui_profiles", utcnow()
    )
    assert "ui_members" in on_index and "ui_profiles" in on_index
    assert ui_server.store.execute(f"SELECT profile_id FROM ({on_index}) WHERE x").fetchall() == [
        (ann,)
    ]
    sampled = preview(ui_server.store, catalog, "city = 'Leeds'", sample_profiles=2)
    assert sampled.sampled == 2 and sampled.profiles == 3  # the read index's profiles
    assert (sampled.members, sampled.sample) in ((2, [ann]), (0, []))


def test_rest_api_checks_an_expression_like_the_builder(ui_server):
    marketing = ui_server.api("marketing")
    ok = marketing.get(
        "/api/v1/segments/check", params={"expression": "performed('Order Completed') >= 1"}
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    from panorama.segments.editor import preview

    same = preview(ui_server.store, _catalog(ui_server), "performed('Order Completed') >= 1")
    assert body["valid"] and body["members"] == same.members >= 1 and body["estimated_from"] is None
    assert body["profiles"] == same.profiles and body["sample"] == same.sample
    typo = marketing.get("/api/v1/segments/check", params={"expression": "last_sen_at IS NULL"})
    assert typo.status_code == 200 and not typo.json()["valid"]
    assert "did you mean last_seen_at" in typo.json()["error"] and typo.json()["members"] is None
    assert (
        ui_server.api("support")
        .get("/api/v1/segments/check", params={"expression": "true"})
        .status_code
        == 403
    )
