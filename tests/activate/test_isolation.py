"""Destinations are isolated: a slow receiver and a dead one hold up neither the healthy
destination nor ingestion."""

from __future__ import annotations

import time

from activate.helpers import SECRET, Receiver, sdk_client, write_project
from conftest import free_port, make_project, start_server


def test_slow_and_down_destinations_do_not_delay_the_others(tmp_path):
    slow, fast = Receiver(delay=1.0), Receiver()
    down = free_port()  # nobody listens there
    project = write_project(
        tmp_path / "project",
        triggers={"order": {"event": "Order Completed", "destinations": ["slow", "down", "fast"]}},
        destinations={
            "slow": {"type": "webhook", "url": slow.url, "secret": SECRET, "timeout": "5s", "concurrency": 1},
            "down": {"type": "webhook", "url": f"http://127.0.0.1:{down}/x", "timeout": "1s",
                     "retry": {"initial": "50ms", "max": "100ms", "max_attempts": 100}},
            "fast": {"type": "webhook", "url": fast.url, "secret": SECRET},
        },
    )  # fmt: skip
    keys = make_project(project, ("web",))
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        calls = []
        for i in range(5):
            started = time.monotonic()
            client.track(f"u{i}", "Order Completed", {"order_id": f"o{i}", "revenue": 5})
            calls.append(time.monotonic() - started)
        sent = time.monotonic()
        assert max(calls) < 2.0, f"ingestion slowed down: {calls}"  # typically ~10 ms each
        fast_requests = fast.wait_for(lambda rs: len(rs) >= 5, timeout=5)
        assert fast_requests[-1].at - sent < 3.0
        assert len(slow.requests) < 5  # still working through its queue, one at a time
        slow.wait_for(lambda rs: len(rs) >= 5, timeout=15)
        states = dict(server.query("SELECT destination, count(*) FILTER (status = 'delivered') "
                                   "FROM activation_outbox GROUP BY 1"))  # fmt: skip
        assert states["fast"] == 5 and states["down"] == 0
        attempts = server.query("SELECT min(attempts) FROM activation_outbox WHERE destination = 'down'")[0][0]
        assert attempts >= 2  # retried all along, without blocking anything
    finally:
        server.stop()
        slow.stop()
        fast.stop()
