"""Webhooks end to end: events through the HTTP API with the real Segment SDK, a real local
receiver that verifies HMAC signatures, retries after 500s, dead deliveries and the CLI."""

from __future__ import annotations

import time

import httpx
import pytest
from typer.testing import CliRunner

from activate.helpers import SECRET, Receiver, sdk_client, segments_ready, wait_until, write_project
from conftest import make_project, start_server
from panorama.cli import app

RETRY = {"initial": "50ms", "max": "400ms", "max_attempts": 4}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _project(tmp_path, receiver: Receiver, **extra):
    project = write_project(
        tmp_path / "project",
        segments={
            "prospect": "not performed('Order Completed')",
            "returning_buyer": {"where": "performed('Order Completed') >= 2",
                                "description": "two orders or more"},
        },
        triggers={
            "welcome_back": {"segment": "returning_buyer", "on": "enter", "destinations": "crm"},
            "big_order": {"event": "Order Completed", "where": "revenue > 100", "destinations": ["crm"]},
        },
        destinations={"crm": {"type": "webhook", "url": receiver.url, "secret": SECRET, "timeout": "2s",
                              "retry": RETRY, "headers": {"X-Team": "growth"}}},
        **extra,
    )  # fmt: skip
    keys = make_project(project, ("web",))
    return project, keys


def test_second_order_moves_prospect_to_returning_buyer_within_a_second(tmp_path, receiver):
    project, keys = _project(tmp_path, receiver)
    server = start_server(project, keys)
    try:
        segments_ready(server)
        client = sdk_client(server.url, keys["web"])
        client.identify("ann", {"email": "ann@example.com", "first_name": "Ann"})
        # batches committed within 0.2 s share one evaluation: let the identify be evaluated alone
        wait_until(lambda: server.query("SELECT 1 FROM segment_membership WHERE segment = 'prospect' "
                                        "AND profile_id = 'ann'"), what="ann enters prospect")  # fmt: skip
        client.track("ann", "Order Completed", {"order_id": "o1", "revenue": 30})
        wait_until(lambda: server.query(
            "SELECT 1 FROM segment_membership WHERE segment = 'prospect' AND profile_id = 'ann' "
            "AND exited_by = 'realtime'"), what="ann leaves prospect")  # fmt: skip
        assert receiver.requests == []  # one order: not yet a returning buyer, nor big
        accepted = time.monotonic()
        client.track("ann", "Order Completed", {"order_id": "o2", "revenue": 45})  # returns after the 200
        [hook] = receiver.wait_for(lambda rs: len(rs) >= 1, timeout=5)
        assert hook.at - accepted < 3.0, f"webhook {hook.at - accepted:.3f} s after the event was accepted"
        # server-side: the entry is recorded within a second of the event's arrival
        [(lag,)] = server.query(
            "SELECT epoch(m.entered_at) - epoch(e.received_at) FROM segment_membership m, events e "
            "WHERE m.segment = 'returning_buyer' AND e.order_id = 'o2'")  # fmt: skip
        assert 0 <= lag < 1.0, lag
        body = hook.json
        assert body["type"] == "segment.entered" and body["segment"] == "returning_buyer"
        assert body["trigger"] == "welcome_back" and body["profile_id"] == "ann"
        assert body["profile"]["email"] == "ann@example.com" and body["profile"]["first_name"] == "Ann"
        assert hook.signature_ok and hook.headers["x-team"] == "growth"
        assert hook.headers["idempotency-key"] == body["idempotency_key"]
        rows = server.query("SELECT segment, entered_by, exited_by FROM segment_membership "
                            "WHERE profile_id = 'ann' ORDER BY segment")  # fmt: skip
        assert rows == [("prospect", "realtime", "realtime"), ("returning_buyer", "realtime", None)]
        # an event trigger with a property filter
        client.track("ann", "Order Completed", {"order_id": "o3", "revenue": 250})
        hooks = receiver.wait_for(lambda rs: len(rs) >= 2)
        assert hooks[1].json["type"] == "event" and hooks[1].json["event"]["properties"]["revenue"] == 250
        assert hooks[1].json["event"]["event"] == "Order Completed"
    finally:
        server.stop()


def test_retries_after_500s_with_the_same_idempotency_key(tmp_path, receiver):
    receiver.statuses = [500, 503]
    project, keys = _project(tmp_path, receiver)
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        client.track("bob", "Order Completed", {"order_id": "b1", "revenue": 500})
        requests = receiver.wait_for(lambda rs: len(rs) >= 3, timeout=10)
        assert [r.status for r in requests] == [500, 503, 200]
        assert all(r.signature_ok for r in requests)
        assert len({r.headers["idempotency-key"] for r in requests}) == 1
        assert len({r.body for r in requests}) == 1
        assert [r.headers["x-panorama-attempt"] for r in requests] == ["1", "2", "3"]
        gaps = [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]
        assert gaps[0] >= 0.03 and gaps[1] >= 0.07  # ~50 ms then ~100 ms (+-20% jitter)
        wait_until(lambda: server.query("SELECT status, attempts FROM activation_outbox")
                   == [("delivered", 3)], what="delivered after 3 attempts")  # fmt: skip
    finally:
        server.stop()


def test_dead_deliveries_are_visible_and_retryable_from_the_cli(tmp_path, receiver, monkeypatch):
    receiver.statuses = [500] * 4 + [410]
    project, keys = _project(tmp_path, receiver)
    from panorama.auth.tokens import create_token
    from panorama.config import load_project
    from panorama.store import open_store

    with open_store(load_project(project).store_path) as store:
        token = create_token(store, "ops", "marketing")[1]
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        client.track("cy", "Order Completed", {"order_id": "c1", "revenue": 101})  # 4 x 500: dead
        receiver.wait_for(lambda rs: len(rs) >= 4)
        client.track("cy", "Order Completed", {"order_id": "c2", "revenue": 102})  # 410: dead at once
        receiver.wait_for(lambda rs: len(rs) >= 5)
        wait_until(lambda: server.query("SELECT count(*) FROM activation_outbox WHERE status = 'dead'")[0][0] == 2,
                   what="two dead deliveries")  # fmt: skip
        # the same, through the REST API while the server owns the store
        auth = {"Authorization": f"Bearer {token}"}
        status = httpx.get(server.url + "/api/v1/activation", headers=auth).json()
        assert status["destinations"][0]["destination"] == "crm" and status["destinations"][0]["dead"] == 2
        dead = httpx.get(server.url + "/api/v1/activation/deliveries", params={"status": "dead"}, headers=auth)
        assert dead.status_code == 200 and {d["last_status"] for d in dead.json()["data"]} == {500, 410}
        assert httpx.get(server.url + "/api/v1/activation").status_code == 401
        assert httpx.post(server.url + "/api/v1/activation/retry", json={"all": True}, headers=auth).status_code == 403
    finally:
        server.stop()
    runner = CliRunner()
    monkeypatch.setenv("COLUMNS", "250")
    result = runner.invoke(app, ["activate", "dead", "--project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    assert result.output.count('"status":"dead"') == 2
    assert "HTTP 500" in result.output and "HTTP 410" in result.output
    status = runner.invoke(app, ["activate", "status", "--project", str(project)])
    assert status.exit_code == 0 and "crm" in status.output and "activate dead" in status.output
    result = runner.invoke(app, ["activate", "retry", "--all", "--project", str(project)])
    assert result.exit_code == 0 and "2 deliveries queued again" in result.output
    result = runner.invoke(app, ["activate", "deliver", "--project", str(project)])
    assert result.exit_code == 0 and "2 delivered" in result.output, result.output
    assert [r.status for r in receiver.requests[-2:]] == [200, 200]
