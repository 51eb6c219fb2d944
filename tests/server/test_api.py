"""The HTTP Tracking API against a live server: good input stored once, bad input refused precisely."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from conftest import make_project, start_server

OK = {"success": True}


def _mid() -> str:
    return str(uuid.uuid4())


def post(server, path, body, *, key=None, auth=True, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(
        server.url + path,
        content=data,
        auth=(key or server.write_key, "") if auth else None,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=10,
    )


def count(server, where="TRUE", params=None) -> int:
    return server.query(f"SELECT count(*) FROM events WHERE {where}", params)[0][0]


@pytest.mark.parametrize(
    ("path", "message", "kind"),
    [
        (
            "/v1/identify",
            {"userId": "u1", "traits": {"email": "Ann@Example.com", "plan": "pro"}},
            "identify",
        ),
        (
            "/v1/track",
            {
                "userId": "u1",
                "event": "Order Completed",
                "properties": {"revenue": 12.5, "currency": "EUR"},
            },
            "track",
        ),
        (
            "/v1/page",
            {"anonymousId": "a1", "name": "Home", "properties": {"url": "https://x.test/"}},
            "page",
        ),
        ("/v1/screen", {"userId": "u1", "name": "Settings"}, "screen"),
        ("/v1/group", {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}, "group"),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "alias"),
        ("/v1/i", {"userId": "u1"}, "identify"),
        ("/v1/t", {"userId": "u1", "event": "Clicked"}, "track"),
        ("/v1/p", {"anonymousId": "a1"}, "page"),
        ("/v1/s", {"anonymousId": "a1"}, "screen"),
        ("/v1/g", {"userId": "u1", "groupId": "g1"}, "group"),
        ("/v1/a", {"userId": "u1", "previousId": "a1"}, "alias"),
    ],
)
def test_each_endpoint_stores_its_type(live_server, path, message, kind):
    message_id = _mid()
    r = post(live_server, path, {**message, "messageId": message_id})
    assert r.status_code == 200, r.text
    assert r.json() == OK
    row = live_server.query(
        "SELECT type, source, user_id, anonymous_id, received_at FROM events WHERE message_id = ?",
        [message_id],
    )
    assert len(row) == 1
    assert row[0][0] == kind
    assert row[0][1] == "web"
    assert row[0][4] is not None


def test_track_row_content(live_server):
    message_id = _mid()
    r = post(live_server, "/v1/track", {
        "userId": "u7", "anonymousId": "anon-7", "event": " Order Completed ", "messageId": message_id,
        "properties": {"revenue": "1,200.50", "currency": "GBP", "order_id": 42},
        "context": {"traits": {"email": "u7@x.test"}}, "timestamp": "2024-03-01T10:00:00Z",
    })  # fmt: skip
    assert r.status_code == 200, r.text
    event, revenue, currency, order_id, props, ts, ids = live_server.query(
        "SELECT event, revenue, currency, order_id, properties, timestamp, identifiers "
        "FROM events WHERE message_id = ?", [message_id]
    )[0]  # fmt: skip
    assert (event, revenue, currency, order_id) == ("Order Completed", 1200.5, "GBP", "42")
    assert json.loads(props)["revenue"] == "1,200.50"
    assert ts == datetime(2024, 3, 1, 10, 0)  # no sentAt: no skew correction
    assert {"type": "email", "value": "u7@x.test"} in ids


def test_write_key_in_body_and_text_plain(live_server):
    message_id = _mid()
    r = httpx.post(live_server.url + "/v1/track", headers={"content-type": "text/plain"},
                   content=json.dumps({"writeKey": live_server.keys["ios"], "userId": "u1", "event": "E",
                                       "messageId": message_id}))  # fmt: skip
    assert r.status_code == 200 and r.json() == OK, r.text
    assert live_server.query("SELECT source FROM events WHERE message_id = ?", [message_id]) == [
        ("ios",)
    ]


def test_gzip_labelled_and_mislabelled(live_server):
    ids = [_mid(), _mid(), _mid()]
    batch = {
        "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": i} for i in ids[:2]]
    }
    labelled = post(live_server, "/v1/batch", None, raw=gzip.compress(json.dumps(batch).encode()),
                    headers={"content-encoding": "gzip"})  # fmt: skip
    assert labelled.status_code == 200 and labelled.json() == OK, labelled.text
    # gzip bytes without Content-Encoding (some clients do this): sniffed by the magic bytes
    unlabelled = post(live_server, "/v1/t", None,
                      raw=gzip.compress(json.dumps({"userId": "u", "event": "E", "messageId": ids[2]}).encode()))  # fmt: skip
    assert unlabelled.status_code == 200 and unlabelled.json() == OK, unlabelled.text
    assert count(live_server, "message_id IN (?, ?, ?)", ids) == 3


def test_same_message_id_is_stored_once(live_server):
    message_id = _mid()
    body = {"userId": "u1", "event": "Paid", "messageId": message_id, "properties": {"revenue": 5}}
    for _ in range(3):
        assert post(live_server, "/v1/track", body).status_code == 200
    batch = {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]}
    assert post(live_server, "/v1/batch", batch).json() == OK
    assert count(live_server, "message_id = ?", [message_id]) == 1


def test_clock_skew_corrected_with_sent_at(live_server):
    """Client clock 1 h fast: timestamp = receivedAt - (sentAt - originalTimestamp)."""
    client_now = datetime.now(UTC) + timedelta(hours=1)
    message_id = _mid()
    body = {"sentAt": client_now.isoformat(), "batch": [{
        "type": "track", "userId": "u", "event": "E", "messageId": message_id,
        "timestamp": (client_now - timedelta(seconds=10)).isoformat()}]}  # fmt: skip
    assert post(live_server, "/v1/batch", body).json() == OK
    ts, original, sent_at, received = live_server.query(
        "SELECT timestamp, original_timestamp, sent_at, received_at FROM events WHERE message_id = ?", [message_id]
    )[0]  # fmt: skip
    assert abs((received - ts).total_seconds() - 10) < 0.01
    assert original == (client_now - timedelta(seconds=10)).replace(tzinfo=None)
    assert sent_at == client_now.replace(tzinfo=None)


def test_batch_partial_rejection(live_server):
    good = [_mid(), _mid()]
    body = {"batch": [
        {"type": "identify", "userId": "u1", "messageId": good[0]},
        {"type": "track", "userId": "u1", "messageId": "bad-1"},
        {"type": "page", "anonymousId": "a", "properties": [], "messageId": "bad-2"},
        {"type": "track", "userId": {}, "event": "E", "messageId": "bad-3"},
        "not a message",
        {"type": "group", "userId": "u1", "groupId": "g", "messageId": good[1]},
        {"type": "shout", "userId": "u1", "messageId": "bad-4"},
    ]}  # fmt: skip
    r = post(live_server, "/v1/batch", body)
    assert r.status_code == 200
    assert r.json() == {"success": True, "rejected": [
        {"index": 1, "messageId": "bad-1", "field": "event", "reason": "a track message needs an event name (string)"},
        {"index": 2, "messageId": "bad-2", "field": "properties", "reason": "must be a JSON object, got list"},
        {"index": 3, "messageId": "bad-3", "field": "userId", "reason": "must be a string, got dict"},
        {"index": 4, "field": "batch[]", "reason": "each message must be a JSON object, got a string"},
        {"index": 6, "messageId": "bad-4", "field": "type",
         "reason": "'shout' is not one of identify, track, page, screen, group, alias"},
    ]}  # fmt: skip
    assert count(live_server, "message_id IN (?, ?)", good) == 2
    assert count(live_server, "message_id LIKE 'bad-%'") == 0
    dead = live_server.query("SELECT source, field, reason, raw FROM dead_letters ORDER BY id")
    assert [(d[0], d[1]) for d in dead] == [("web", "event"), ("web", "properties"), ("web", "userId"),
                                            ("web", "batch[]"), ("web", "type")]  # fmt: skip
    assert json.loads(dead[0][3])["messageId"] == "bad-1"
    assert "writeKey" not in dead[0][3]


def test_batch_envelope_context_is_merged(live_server):
    message_id = _mid()
    body = {"context": {"library": {"name": "x"}, "ip": "1.2.3.4"},
            "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": message_id,
                       "context": {"ip": "5.6.7.8"}}]}  # fmt: skip
    assert post(live_server, "/v1/import", body).json() == OK
    context = json.loads(
        live_server.query("SELECT context FROM events WHERE message_id = ?", [message_id])[0][0]
    )
    assert context == {"library": {"name": "x"}, "ip": "5.6.7.8"}


BIG = "x" * 40_000


@pytest.mark.parametrize(
    ("path", "raw", "headers", "status", "code", "message"),
    [
        ("/v1/track", b'{"userId": "u", "event": "E"', {}, 400, "invalid_json",
         "the body is not valid JSON: unexpected end of data: line 1 column 29 (char 28)"),
        ("/v1/track", b'{"userId": "u", event: "E"}', {}, 400, "invalid_json",
         "the body is not valid JSON: unexpected character, expected a string key: line 1 column 17 (char 16)"),
        ("/v1/track", b"", {}, 400, "invalid_json", "the body is empty; send a JSON object"),
        ("/v1/track", b'[{"userId": "u"}]', {}, 400, "invalid_json", "the body must be a JSON object, got an array"),
        ("/v1/batch", b'{"batch": {}}', {}, 400, "invalid_batch",
         "`batch` must be a JSON array of messages, got an object"),
        ("/v1/batch", b'{"messages": []}', {}, 400, "invalid_batch", "`batch` is required: a JSON array of messages"),
        ("/v1/batch", b'{"batch": [], "sentAt": "soon"}', {}, 400, "invalid_batch",
         "sentAt: 'soon' is not an ISO 8601 timestamp"),
        ("/v1/track", json.dumps({"userId": "u", "event": "E", "properties": {"b": BIG}}).encode(), {}, 413,
         "message_too_large", "the message is 40,054 bytes; the limit is 32 KB (32,768 bytes) per message"),
        ("/v1/batch", json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E", "p": BIG}] * 14}).encode(),
         {}, 413, "batch_too_large", "the limit is 500 KB (512,000 bytes) per batch request"),
        ("/v1/batch", gzip.compress(json.dumps({"batch": [{"userId": "u", "p": "y" * 600_000}]}).encode()),
         {"content-encoding": "gzip"}, 413, "batch_too_large",
         "the request body is over the limit once decompressed; the limit is 500 KB (512,000 bytes)"),
        ("/v1/track", b"\x1f\x8b\x08\x00garbage", {}, 400, "invalid_encoding", "the gzip body is truncated"),
        ("/v1/track", b"\x1f\x8b\x09\x00garbage", {"content-encoding": "gzip"}, 400, "invalid_encoding",
         "the body is not valid gzip data: Error -3 while decompressing data: unknown compression method"),
        ("/v1/track", b"{}", {"content-encoding": "br"}, 415, "unsupported_encoding",
         "Content-Encoding 'br' is not supported"),
        ("/v1/track", b'{"userId": {}, "event": "E"}', {}, 400, "invalid_message", "userId: must be a string, got dict"),
        ("/v1/track", b'{"userId": "u", "event": "E", "properties": []}', {}, 400, "invalid_message",
         "properties: must be a JSON object, got list"),
        ("/v1/track", b'{"event": "E", "properties": {}}', {}, 400, "invalid_message",
         "userId: a message needs a userId or an anonymousId"),
        ("/v1/track", b'{"userId": "u"}', {}, 400, "invalid_message",
         "event: a track message needs an event name (string)"),
        ("/v1/track", b'{"userId": "u", "event": 5}', {}, 400, "invalid_message",
         "event: a track message needs an event name (string)"),
        ("/v1/group", b'{"userId": "u"}', {}, 400, "invalid_message", "groupId: a group message needs a groupId"),
        ("/v1/alias", b'{"userId": "u"}', {}, 400, "invalid_message", "previousId: an alias message needs a previousId"),
        ("/v1/identify", b'{"userId": "u", "type": "track"}', {}, 400, "invalid_message",
         "type: 'track' does not match the endpoint /v1/identify (type 'identify')"),
        ("/v1/track", b'{"userId": "u", "event": "E", "timestamp": "yesterday"}', {}, 400, "invalid_message",
         "timestamp: 'yesterday' is not an ISO 8601 timestamp"),
        ("/v1/track", b'{"userId": "u", "event": "E", "properties": {"revenue": "lots"}}', {}, 400,
         "invalid_message", "properties.revenue: must be a number, got 'lots'"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_precisely(live_server, path, raw, headers, status, code, message):
    before = _mid()
    assert (
        post(
            live_server, "/v1/track", {"userId": "u", "event": "Before", "messageId": before}
        ).json()
        == OK
    )
    r = post(live_server, path, None, raw=raw, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert message in body["message"], body["message"]
    after = _mid()
    assert (
        post(live_server, "/v1/track", {"userId": "u", "event": "After", "messageId": after}).json()
        == OK
    )
    assert count(live_server) == 2  # nothing but the good events
    if code == "invalid_message":  # a well-formed but invalid message is dead-lettered too
        field, reason = live_server.query("SELECT field, reason FROM dead_letters")[0]
        assert body["field"] == field and body["reason"] == reason


def test_write_key_required_and_checked(live_server, monkeypatch):
    body = {"userId": "u", "event": "E"}
    missing = post(live_server, "/v1/track", body, auth=False)
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_write_key"
    assert "HTTP Basic username" in missing.json()["message"]

    wrong = post(live_server, "/v1/track", body, key="pk_not-a-real-key")
    assert wrong.status_code == 401
    assert wrong.json() == {
        "success": False,
        "code": "invalid_write_key",
        "message": "write key pk_not-a… is not valid",
    }

    in_body = post(live_server, "/v1/track", {**body, "writeKey": "nope"}, auth=False)
    assert in_body.status_code == 401 and in_body.json()["code"] == "invalid_write_key"

    bearer = post(
        live_server, "/v1/track", body, auth=False, headers={"authorization": "Bearer abc"}
    )
    assert bearer.status_code == 401 and "use HTTP Basic" in bearer.json()["message"]

    garbage = post(
        live_server, "/v1/track", body, auth=False, headers={"authorization": "Basic !!!"}
    )
    assert garbage.status_code == 401 and "not valid base64" in garbage.json()["message"]
    assert count(live_server) == 0


def test_revoked_key_gets_401(live_server):
    from panorama.ingest.keys import list_keys, revoke_key

    key = live_server.keys["ios"]
    assert post(live_server, "/v1/t", {"userId": "u", "event": "E"}, key=key).status_code == 200
    store = live_server.state.store
    ios = next(k for k in list_keys(store) if k.source == "ios")
    revoke_key(store, ios.id)
    live_server.state.keys.reload()
    r = post(live_server, "/v1/t", {"userId": "u", "event": "E2"}, key=key)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_write_key"
    assert f"(id {ios.id}) was revoked at" in r.json()["message"]
    # the other source's key still works
    assert post(live_server, "/v1/t", {"userId": "u", "event": "E3"}).status_code == 200
    assert [r[0] for r in live_server.query("SELECT event FROM events ORDER BY event")] == [
        "E",
        "E3",
    ]


def test_key_created_while_running_works_at_once(live_server):
    from panorama.ingest.keys import create_key

    _, key = create_key(live_server.state.store, "android")
    live_server.state.keys._loaded_at = 0  # as if the last reload was long ago
    r = post(live_server, "/v1/t", {"userId": "u", "event": "E", "messageId": "android-1"}, key=key)
    assert r.status_code == 200, r.text
    assert live_server.query("SELECT source FROM events WHERE message_id = 'android-1'") == [
        ("android",)
    ]


def test_cors_preflight_docs_and_health(live_server):
    pre = httpx.options(live_server.url + "/v1/batch", headers={"origin": "https://shop.test",
                                                                "access-control-request-method": "POST"})  # fmt: skip
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert httpx.get(live_server.url + "/docs").status_code == 200
    spec = httpx.get(live_server.url + "/openapi.json").json()
    assert "/v1/batch" in spec["paths"] and "/v1/track" in spec["paths"]
    health = httpx.get(live_server.url + "/health").json()
    assert health == {"status": "ok", "writer": True, "write_keys": 2}
    assert httpx.get(live_server.url + "/v1/track").status_code == 405


def test_status_counts_the_keys_source(live_server):
    post(live_server, "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E"},
                                              {"type": "track", "userId": "u"}]})  # fmt: skip
    status = httpx.get(live_server.url + "/v1/status", auth=(live_server.write_key, "")).json()
    assert status["source"] == "web" and status["events"] == 1 and status["dead_letters"] == 1
    assert httpx.get(live_server.url + "/v1/status").status_code == 401


def test_the_store_can_checkpoint_after_serving_requests(live_server):
    """No server thread keeps a transaction open once it has answered: DuckDB's CHECKPOINT
    (which fails while one does and another has committed an UPDATE since) still gets in.
    Once, the event loop's cursor kept the first request's read of the privacy salt open,
    and under load the WAL and DuckDB's memory grew without end."""
    import time

    from panorama.ingest import hooks

    assert post(live_server, "/v1/track", {"userId": "u1", "event": "E", "messageId": _mid()}).json() == OK
    batch = [{"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@example.com"},
              "messageId": _mid()} for i in range(20)]  # fmt: skip
    assert post(live_server, "/v1/batch", {"batch": batch}).json() == OK
    store = live_server.state.store
    assert live_server.state.writer.flush(10)
    deadline = time.monotonic() + 10
    while (hooks.background_stats(store) or {}).get("runs", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    store.execute("UPDATE ingest_journal SET loaded_seq = loaded_seq")  # an UPDATE committed now
    assert store.checkpoint(wait=5), "a server thread holds a transaction open"


def test_fastapi_routes_answer_like_the_fast_path(project_dir):
    """With the ASGI fast path off, the documented FastAPI routes give the same answers."""
    keys = make_project(project_dir)
    server = start_server(project_dir, keys, fast_path=False)
    try:
        ok = post(server, "/v1/track", {"userId": "u", "event": "E", "messageId": "m1"})
        assert ok.status_code == 200 and ok.content == b'{"success":true}'
        bad = post(server, "/v1/t", None, raw=b"{")
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_json"
        big = post(server, "/v1/batch", None, raw=b"{" + b" " * 600_000 + b"}")
        assert big.status_code == 413 and big.json()["code"] == "batch_too_large"
        assert post(server, "/v1/t", {"userId": "u", "event": "E"}, auth=False).status_code == 401
        assert server.query("SELECT count(*) FROM events") == [(1,)]
    finally:
        server.stop()


def test_success_body_is_exactly_what_sdks_expect(live_server):
    r = post(live_server, "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert orjson.loads(r.content) == {"success": True}
