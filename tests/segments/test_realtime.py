"""Segments in the running server: events move profiles at once; time passing alone moves them
on the clock (re-checked every `recheck_every`), and entries/exits fire their triggers."""

from __future__ import annotations

import time

from activate.helpers import SECRET, Receiver, sdk_client, wait_until, write_project
from conftest import make_project, start_server


def test_conditions_that_change_with_time_are_rechecked(tmp_path, monkeypatch):
    from panorama.segments import realtime

    monkeypatch.setattr(realtime, "CATALOG_RETRY_EVERY", 0.5)
    receiver = Receiver()
    project = write_project(
        tmp_path / "project",
        segments={
            "active": {"where": "performed('Order Completed', within='1500ms')", "recheck_every": "200ms"},
            "lapsed": {"where": "performed('Order Completed') AND NOT performed('Order Completed', within='1500ms')",
                       "recheck_every": "200ms"},
            "vip": "plan = 'vip'",
        },
        triggers={
            "lapsed_entry": {"segment": "lapsed", "on": "enter", "destinations": "hook"},
            "active_exit": {"segment": "active", "on": "exit", "destinations": "hook"},
        },
        destinations={"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    server = start_server(project, keys)
    try:
        runtime = wait_until(lambda: _segments_runtime(server), what="the segments runtime")
        assert runtime.ready.wait(30)
        client = sdk_client(server.url, keys["web"])
        client.identify("ivy", {"plan": "vip", "email": "ivy@example.com"})
        ordered = time.monotonic()
        client.track("ivy", "Order Completed", {"order_id": "i1", "revenue": 10})
        wait_until(lambda: _current(server, "ivy") >= {"active"}, what="ivy enters active", timeout=5)
        assert time.monotonic() - ordered < 2.0  # typically ~0.1-0.3 s; generous for loaded machines
        requests = receiver.wait_for(lambda rs: len(rs) >= 2, timeout=15)
        elapsed = time.monotonic() - ordered
        assert 1.2 < elapsed < 8.0, elapsed  # 1.5 s window, re-checked every 0.2 s
        kinds = sorted((r.json["trigger"], r.json["type"]) for r in requests)
        assert kinds == [("active_exit", "segment.exited"), ("lapsed_entry", "segment.entered")]
        assert all(r.signature_ok for r in requests)
        history = server.query("SELECT segment, entered_by, exited_by FROM segment_membership "
                               "WHERE profile_id = 'ivy' AND segment <> 'vip' ORDER BY segment")  # fmt: skip
        # the event brings ivy in (unless the 0.2 s clock got there first); time takes her out
        assert history[0][0] == "active" and history[0][1] in ("realtime", "clock") and history[0][2] == "clock"
        assert history[1:] == [("lapsed", "clock", None)]
        # `plan` was unknown at start-up (no identify yet): once seen, the segment is backfilled
        wait_until(lambda: "vip" in _current(server, "ivy"), what="ivy in vip", timeout=10)
        assert server.query("SELECT entered_by FROM segment_membership WHERE segment = 'vip'") == [("backfill",)]
    finally:
        server.stop()
        receiver.stop()


def _segments_runtime(server):
    from panorama.segments.realtime import runtime_for

    return runtime_for(server.state.store)


def _current(server, profile_id: str) -> set[str]:
    return {r[0] for r in server.query(
        "SELECT segment FROM segment_membership WHERE profile_id = ? AND exited_at IS NULL", [profile_id])}  # fmt: skip
