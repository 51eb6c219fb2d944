"""Segments over resolved identities: after `unify`, profiles are the identity graph's, and
events through the API (even anonymous ones) count for the person they resolve to."""

from __future__ import annotations

from datetime import timedelta

from activate.helpers import SECRET, Receiver, sdk_client, segments_ready, wait_until, write_project
from conftest import make_project, start_server
from panorama.config import load_project
from panorama.ingest.log import append_events, utcnow
from panorama.ingest.segment import normalize_message
from panorama.segments.engine import SegmentSet, members, refresh
from panorama.store import open_store


def test_segments_follow_identity_resolution(tmp_path):
    receiver = Receiver()
    project = write_project(
        tmp_path / "project",
        segments={"returning": "performed('Order Completed') >= 2", "vip": "plan = 'vip'"},
        triggers={"welcome_back": {"segment": "returning", "on": "enter", "destinations": "hook"}},
        destinations={"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    proj = load_project(project)
    now = utcnow() - timedelta(hours=1)
    messages = [
        {"type": "identify", "userId": "u1", "anonymousId": "a1",
         "traits": {"email": "ann@example.com", "plan": "vip", "first_name": "Ann"}},
        {"type": "track", "anonymousId": "a1", "event": "Order Completed", "properties": {"order_id": "o1"}},
        {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"order_id": "o2"}},
    ]  # fmt: skip
    with open_store(proj.store_path) as store:
        rows = [normalize_message({**m, "messageId": f"m{i}"}, source="web", received_at=now)
                for i, m in enumerate(messages)]  # fmt: skip
        append_events(store.cursor(), rows)
        refresh(store, SegmentSet.build(store, proj.config))  # before unify: user and device apart
        assert [p for p, _ in members(store, "vip")] == ["u1"]
        from panorama.identity.service import unify

        unify(store, proj)
        segset = SegmentSet.build(store, proj.config)
        assert segset.catalog.mode == "resolved"
        result = refresh(store, segset)
        assert {c.by for c in result.changes} == {"backfill"}  # new profile ids: no triggers
        [(ann, _)] = members(store, "vip")
        assert ann != "u1"
        assert members(store, "returning") == []
    server = start_server(project, keys)
    try:
        segments_ready(server)
        client = sdk_client(server.url, keys["web"])
        client.track(anonymous_id="a1", event="Order Completed", properties={"order_id": "o3"})
        [hook] = receiver.wait_for(lambda rs: len(rs) >= 1, timeout=10)
        body = hook.json
        assert body["profile_id"] == ann and body["segment"] == "returning"
        assert body["profile"]["email"] == "ann@example.com"
        wait_until(lambda: server.query("SELECT entered_by FROM segment_membership WHERE segment = 'returning'")
                   == [("realtime",)], what="realtime entry")  # fmt: skip
    finally:
        server.stop()
        receiver.stop()
