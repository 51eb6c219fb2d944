"""Durability across restarts: `panorama serve` killed (SIGKILL) while deliveries are pending
and timers are running; after a restart every action is delivered, none lost, and the timers
fire or are cancelled as if nothing had happened."""

from __future__ import annotations

import time

import pytest

from activate.helpers import SECRET, Receiver, sdk_client, start_process, write_project
from conftest import free_port, make_project
from panorama.config import load_project
from panorama.store import open_store

pytestmark = pytest.mark.xdist_group("activate-restart")


def test_kill_with_pending_deliveries_and_timers_loses_none(tmp_path):
    port = free_port()  # the receiver is down (connection refused) until after the crash
    project = write_project(
        tmp_path / "project",
        triggers={
            "order": {"event": "Order Completed", "destinations": "hook"},
            "cart": {"event": "Product Added", "not_followed_by": "Order Completed", "within": "1500ms",
                     "destinations": "hook"},
            "checkout": {"event": "Checkout Started", "not_followed_by": "Order Completed", "within": "10m",
                         "destinations": "hook"},
        },
        destinations={"hook": {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET,
                               "timeout": "1s", "retry": {"initial": "100ms", "max": "300ms",
                                                          "max_attempts": 100}}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    log = tmp_path / "serve.log"
    server = start_process(project, log=log)
    orders = 15
    try:
        client = sdk_client(server.url, keys["web"])
        client.track("cara", "Product Added", {"name": "Lamp"})  # timer due in 1.5 s
        client.track("ben", "Checkout Started", {"name": "Table"})  # timer due in 10 min
        for i in range(orders):
            client.track(f"user-{i}", "Order Completed", {"order_id": f"o{i}", "revenue": 10 + i})
        time.sleep(1.0)  # deliveries are attempted and fail (nobody listens)
    finally:
        server.kill()  # SIGKILL: no shutdown; pending rows and timers stay in the store
    receiver = Receiver(port=port)
    try:
        time.sleep(1.0)  # cara's timer comes due while the server is down
        server = start_process(project, log=log)
        try:
            client = sdk_client(server.url, keys["web"])
            client.track("ben", "Order Completed", {"order_id": "b1"})  # cancels ben's timer
            expected = orders + 2  # the orders, ben's order, cara's abandoned cart
            requests = receiver.wait_for(
                lambda rs: len({r.headers["idempotency-key"] for r in rs}) >= expected, timeout=30
            )
            time.sleep(0.3)
        finally:
            server.terminate()
    finally:
        receiver.stop()
    keys_seen = {r.headers["idempotency-key"] for r in requests}
    assert len(keys_seen) == expected
    assert all(r.signature_ok for r in requests)
    bodies = {r.json["idempotency_key"]: r.json for r in requests}
    assert sorted(b["profile_id"] for b in bodies.values() if b["type"] == "event") == sorted(
        [f"user-{i}" for i in range(orders)] + ["ben"]
    )
    [cart] = [b for b in bodies.values() if b["type"] == "event.not_followed"]
    assert cart["profile_id"] == "cara" and cart["event"]["properties"]["name"] == "Lamp"
    with open_store(load_project(project).store_path) as store:
        rows = store.execute("SELECT status, count(*), max(attempts) FROM activation_outbox GROUP BY status").fetchall()
        assert rows[0][:2] == ("delivered", expected), rows
        assert rows[0][2] >= 2  # the first attempts failed before the crash
        timers = store.execute("SELECT trigger, profile_id, status FROM activation_timers ORDER BY 1").fetchall()
    assert timers == [("cart", "cara", "fired"), ("checkout", "ben", "cancelled")]
