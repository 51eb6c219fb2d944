"""Real tracking SDKs (segment-analytics-python, rudder-sdk-python) against a live server.

Both post batches to {host}/v1/batch with the write key as HTTP Basic username; Segment's
also puts `writeKey` in the body and gzips when asked, RudderStack's gzips by default. Both
retry 5xx answers: Segment at once then after 0.5 s, 1 s...; RudderStack with exponential
backoff (full jitter, ~0-1 s then ~0-2 s). The retry tests make the server fail a request
*after* committing it (the answer is lost) and *before* reading it: the SDK's retries must
end with every message stored exactly once.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from conftest import make_project, start_server


def _client(sdk: str, server, key: str, gzip: bool, errors: list):
    def on_error(exc, batch):
        errors.append((exc, batch))

    if sdk == "segment":
        from segment.analytics.client import Client
    else:
        from rudderstack.analytics.client import Client
    return Client(key, host=server.url, gzip=gzip, on_error=on_error, upload_interval=0.05,
                  upload_size=100, max_retries=4)  # fmt: skip


def _send_all(client, ids: dict[str, str], stamp: datetime) -> None:
    client.identify(
        "user-1",
        {"email": "ann@example.com", "plan": "pro"},
        message_id=ids["identify"],
        timestamp=stamp,
    )
    client.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR", "items": [{"sku": "A"}]},
                 message_id=ids["track"], timestamp=stamp)  # fmt: skip
    client.page("user-1", "Docs", "Quick start", {"url": "https://example.com/docs"}, message_id=ids["page"],
                timestamp=stamp)  # fmt: skip
    client.screen(
        "user-1", "App", "Settings", {"tab": "privacy"}, message_id=ids["screen"], timestamp=stamp
    )
    client.group(
        "user-1",
        "org-9",
        {"name": "Acme", "employees": 40},
        message_id=ids["group"],
        timestamp=stamp,
    )
    client.alias("anon-1", "user-1", message_id=ids["alias"], timestamp=stamp)


def _check_stored(server, ids: dict[str, str], stamp: datetime, library: str) -> None:
    rows = server.query(
        "SELECT message_id, type, user_id, event, group_id, previous_id, traits, properties, context, timestamp, "
        "source FROM events ORDER BY message_id"
    )
    assert len(rows) == len(ids)
    by_id = {r[0]: r for r in rows}
    assert set(by_id) == set(ids.values())
    for kind, message_id in ids.items():
        (
            _,
            stored_type,
            user_id,
            event,
            group_id,
            previous_id,
            traits,
            properties,
            context,
            ts,
            source,
        ) = by_id[message_id]
        assert stored_type == kind
        assert user_id == "user-1"
        assert source == "web"
        # sent within the second: no skew correction, the client's timestamp is kept (ms precision)
        assert abs((ts - stamp.replace(tzinfo=None)).total_seconds()) < 0.001
        assert json.loads(context)["library"]["name"] == library
        if kind == "identify":
            assert json.loads(traits) == {"email": "ann@example.com", "plan": "pro"}
        if kind == "track":
            assert event == "Order Completed"
            assert json.loads(properties) == {
                "revenue": 42.5,
                "currency": "EUR",
                "items": [{"sku": "A"}],
            }
        if kind == "page":
            assert event == "Quick start"
            assert json.loads(properties)["url"] == "https://example.com/docs"
        if kind == "group":
            assert group_id == "org-9" and json.loads(traits) == {"name": "Acme", "employees": 40}
        if kind == "alias":
            assert previous_id == "anon-1"


def _ids() -> dict[str, str]:
    return {k: str(uuid.uuid4()) for k in ("identify", "track", "page", "screen", "group", "alias")}


LIBRARY = {"segment": "analytics-python", "rudder": "analytics-python"}


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
@pytest.mark.parametrize("gzip", [False, True])
def test_sdk_messages_stored_once(live_server, sdk, gzip):
    errors: list = []
    client = _client(sdk, live_server, live_server.write_key, gzip, errors)
    ids = _ids()
    stamp = datetime.now(UTC).replace(microsecond=123000)
    _send_all(client, ids, stamp)
    client.flush()
    client.join()
    assert errors == []
    _check_stored(live_server, ids, stamp, LIBRARY[sdk])


class FaultInjector:
    """ASGI wrapper failing POST /v1/batch per plan: 'lose' = process, then answer 503 (the
    commit happened, the answer was lost); 'drop' = answer 503 without processing."""

    def __init__(self, app, plan: list[str]):
        self.app = app
        self.plan = list(plan)
        self.seen: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        action = None
        if scope["type"] == "http" and scope["path"] == "/v1/batch":
            with self.lock:
                action = self.plan.pop(0) if self.plan else "pass"
                self.seen.append(action)
        if action in ("lose", "drop"):
            if action == "lose":

                async def swallow(message):
                    if message["type"] == "http.response.start":
                        assert message["status"] == 200

                await self.app(scope, receive, swallow)
            else:
                while (await receive()).get("more_body"):
                    pass
            body = orjson.dumps(
                {"success": False, "code": "unavailable", "message": "injected failure"}
            )
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_sdk_retries_after_lost_answer_store_once(project_dir, sdk):
    keys = make_project(project_dir)
    injector: FaultInjector | None = None

    def wrap(app):
        nonlocal injector
        injector = FaultInjector(app, ["lose", "drop"])
        return injector

    server = start_server(project_dir, keys, wrap=wrap)
    try:
        errors: list = []
        client = _client(sdk, server, server.write_key, True, errors)
        ids = _ids()
        stamp = datetime.now(UTC).replace(microsecond=0)
        _send_all(client, ids, stamp)
        client.flush()
        client.join()
        assert errors == []
        assert injector.seen[:3] == ["lose", "drop", "pass"]
        _check_stored(server, ids, stamp, LIBRARY[sdk])
    finally:
        server.stop()


def test_segment_sdk_old_clock_is_corrected(live_server):
    """A client whose clock is 2 h slow: stored timestamp = receivedAt - (sentAt - timestamp)."""
    from segment.analytics import request

    errors: list = []
    slow = datetime.now(UTC) - timedelta(hours=2)
    message = {"type": "track", "userId": "u", "event": "E", "messageId": "skewed",
               "timestamp": (slow - timedelta(seconds=30)).isoformat()}  # fmt: skip
    try:
        request.post(
            live_server.write_key, live_server.url, batch=[message], sentAt=slow.isoformat()
        )
    except Exception as exc:  # pragma: no cover - reported below
        errors.append(exc)
    assert errors == []
    ts, received = live_server.query(
        "SELECT timestamp, received_at FROM events WHERE message_id = 'skewed'"
    )[0]
    assert abs((received - ts).total_seconds() - 30) < 0.01


def test_sdk_bad_key_is_reported_not_retried(live_server):
    from segment.analytics.request import APIError, post

    with pytest.raises(APIError) as info:
        post("pk_wrong", live_server.url, batch=[{"type": "track", "userId": "u", "event": "E"}])
    assert info.value.status == 401
    assert info.value.code == "invalid_write_key"
