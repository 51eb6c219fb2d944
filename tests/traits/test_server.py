"""Real time through the HTTP API: events posted to a live server update profile_traits."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from panorama.config import load_project
from panorama.traits import realtime
from panorama.traits.batch import compute, latest_run

from .conftest import traits_of


def _track(user: str, event: str, ts: str, **props) -> dict:
    return {"type": "track", "userId": user, "event": event, "timestamp": ts, "messageId": str(uuid.uuid4()),
            "properties": props}  # fmt: skip


def _post(server, messages: list[dict]) -> None:
    r = httpx.post(server.url + "/v1/batch", content=json.dumps({"batch": messages}).encode(),
                   auth=(server.write_key, ""), headers={"content-type": "application/json"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_events_posted_to_the_api_update_traits(live_server):
    realtime.install()
    store = live_server.state.store
    config = load_project(live_server.project).config
    _post(live_server, [
        _track("ann", "Order Completed", "2024-05-01T10:00:00Z", order_id="A1", revenue=40),
        _track("ann", "Product Viewed", "2024-05-01T09:55:00Z", category="Books"),
        _track("bob", "Email Opened", "2024-05-02T08:00:00Z"),
    ])  # fmt: skip
    _wait(lambda: store.scalar("SELECT count(*) FROM events") == 3)
    compute(store, config)
    before = realtime.stats.batches
    _post(live_server, [
        _track("ann", "Order Completed", "2024-05-03T10:00:00Z", order_id="A2", revenue=60),
        _track("bob", "Email Opened", "2024-05-03T08:00:00Z"),
        _track("cat", "Order Completed", "2024-05-03T11:00:00Z", order_id="C1", revenue=15),
    ])  # fmt: skip
    _wait(lambda: realtime.stats.batches > before)
    updated = traits_of(store)
    assert sum(r["orders"] for r in updated.values()) == 3
    assert sum(r["revenue"] for r in updated.values()) == 115.0
    # the same as a batch recompute with the run's as-of time and parameters
    run = latest_run(store)
    compute(store, config, run["as_of"], point_in_time=False, params=run["parameters"])
    assert traits_of(store) == updated
