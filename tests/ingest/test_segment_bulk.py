"""The bulk path for Segment JSON-lines files gives the rows and dead letters the per-message
Python path (`normalize_message`) gives, line for line, on plain and on awkward messages."""

from __future__ import annotations

import json

import orjson
import pytest

from panorama.config import load_project
from panorama.ingest import files, readers
from panorama.store import open_store

CONFIG = """
name: acme
store: panorama.duckdb
sources:
  web:
    path: data/web.jsonl
    kind: segment
"""

T = "2024-03-01T10:00:00.123Z"
MESSAGES: list[object] = [
    {
        "type": "track",
        "messageId": "m1",
        "userId": "u1",
        "anonymousId": "a1",
        "event": "Order Completed",
        "timestamp": T,
        "properties": {"revenue": 12.5, "currency": "GBP", "product_id": "P1", "quantity": 2},
        "context": {"ip": "1.2.3.4", "traits": {"email": "x@y.com"}},
    },
    {
        "type": "page",
        "messageId": "m2",
        "anonymousId": "a2",
        "name": "Home",
        "properties": {"path": "/"},
        "timestamp": "2024-03-01 10:00:00",
        "sentAt": "2024-03-01T10:00:01Z",
    },
    {"type": "page", "messageId": "m2b", "anonymousId": "a2", "name": "", "timestamp": T},
    {"type": "page", "messageId": "m2c", "anonymousId": "a2", "name": 7, "timestamp": T},
    {"type": "screen", "messageId": "m3", "userId": "u3", "name": " Padded ", "timestamp": T},
    {
        "type": "identify",
        "messageId": "m4",
        "userId": "u4",
        "traits": {"email": "a@b.com", "phone": "+447700900123", "firstName": "Ann"},
        "context": {"traits": {"email": "a@b.com", "phone": "+447700900999"}},
        "timestamp": T,
    },
    {
        "type": "identify",
        "messageId": "m5",
        "anonymousId": "a5",
        "traits": {},
        "context": {"traits": {"email": "c@d.com"}},
        "timestamp": T,
    },
    {
        "type": "identify",
        "messageId": "m5b",
        "anonymousId": "a5",
        "traits": {"email": " pad@d.com "},
        "timestamp": T,
    },
    {
        "type": "group",
        "messageId": "m6",
        "userId": "u6",
        "groupId": "g1",
        "traits": {"name": "Acme"},
        "timestamp": T,
    },
    {"type": "group", "messageId": "m7", "userId": "u6", "timestamp": T},
    {"type": "alias", "messageId": "m8", "userId": "u8", "previousId": "a8", "timestamp": T},
    {"type": "alias", "messageId": "m9", "userId": "u8", "timestamp": T},
    {"type": "Track", "messageId": "m10", "userId": "u1", "event": "Mixed Case", "timestamp": T},
    {"type": "track", "messageId": "m11", "userId": 42, "event": "Numeric User", "timestamp": T},
    {"type": "track", "userId": "u1", "event": "No Message Id", "timestamp": T},
    {"type": "track", "messageId": "m12", "userId": "u1", "event": "  Spaces  ", "timestamp": T},
    {"type": "track", "messageId": "m13", "userId": "u1", "event": "", "timestamp": T},
    {
        "type": "track",
        "messageId": "m14",
        "userId": "u1",
        "event": "Offset",
        "timestamp": "2024-03-01T12:00:00+02:00",
    },
    {
        "type": "track",
        "messageId": "m15",
        "userId": "u1",
        "event": "Epoch",
        "timestamp": 1709287200,
    },
    {
        "type": "track",
        "messageId": "m16",
        "userId": "u1",
        "event": "Bad Date",
        "timestamp": "2024-02-30T10:00:00Z",
    },
    {
        "type": "track",
        "messageId": "m17",
        "userId": "u1",
        "event": "Old",
        "timestamp": "1850-01-01T00:00:00Z",
    },
    {"type": "track", "messageId": "m18", "userId": "u1", "event": "No Time"},
    {
        "type": "track",
        "messageId": "m19",
        "userId": "u1",
        "event": "Stated",
        "receivedAt": "2024-03-02T00:00:00Z",
        "originalTimestamp": "2024-03-01T09:00:00Z",
    },
    {
        "type": "track",
        "messageId": "m20",
        "userId": "u1",
        "event": "Text Price",
        "properties": {"price": "1,200.50", "total": 3},
    },
    {
        "type": "track",
        "messageId": "m21",
        "userId": "u1",
        "event": "Total",
        "properties": {"total": 99, "price": ""},
    },
    {
        "type": "track",
        "messageId": "m22",
        "userId": "u1",
        "event": "Bool",
        "properties": {"price": True},
    },
    {
        "type": "track",
        "messageId": "m23",
        "userId": "u1",
        "event": "Types",
        "properties": {
            "product_id": 123,
            "order_id": 4.5,
            "category": ["a"],
            "channel": {"x": 1},
            "offer_id": None,
        },
    },
    {
        "type": "track",
        "messageId": "m24",
        "userId": "u1",
        "event": "Flag",
        "properties": {"campaign_id": False},
    },
    {
        "type": "track",
        "messageId": "m25",
        "userId": "u1",
        "event": "Big",
        "properties": {"value": 1e20, "n": 1e-7},
    },
    {
        "type": "track",
        "messageId": "m26",
        "userId": "u1",
        "event": "Unicode é",
        "properties": {"s": 'a"b\\n\u00e9'},
    },
    {
        "type": "track",
        "messageId": "m27",
        "userId": "u1",
        "event": "Props List",
        "properties": [1, 2],
    },
    {
        "type": "track",
        "messageId": "",
        "anonymousId": "",
        "userId": "u1",
        "event": "Empty Ids",
        "timestamp": T,
    },
    {"type": "track", "messageId": "m28", "event": "Nobody", "timestamp": T},
    {"type": "track", "messageId": "m1", "userId": "u1", "event": "Duplicate Id", "timestamp": T},
    ["not", "an", "object"],
    "just a string",
]
RAW_LINES = [
    b'{"type":"track","messageId":"m29","userId":"u1","event":"Dup","event":"Dup2","timestamp":"'
    + T.encode()
    + b'"}',
    b'{"type":"track","messageId":"m30","userId":"u1","event":"NaN","properties":{"price":NaN}}',
    b'{"type":"track","messageId":"m31","userId":"u1","event":"Comma",}',
    b'{"type":"track","messageId":"m32", "userId":"u1" ,"event":"Spacing",  "properties": { "price" : 3 } }',
    b'{"type":"track","messageId":"m33","userId":"u1","event":"Latin1 \xe9"}',
    b"{not json",
    b"",
    b"   ",
]


def _lines() -> bytes:
    out = [orjson.dumps(m) for m in MESSAGES] + RAW_LINES
    return b"\n".join(out) + b"\n"


def _load(tmp_path, bulk: bool):
    root = tmp_path / ("bulk" if bulk else "python")
    (root / "data").mkdir(parents=True)
    (root / "panorama.yaml").write_text(CONFIG)
    (root / "data" / "web.jsonl").write_bytes(_lines())
    project = load_project(root)
    with open_store(project.store_path) as store:
        if bulk:
            result = files.ingest_source(store, project, "web")
        else:
            original = files._Loader.segment_lines

            def python_path(self, chunks, progress, expected):
                self.segment(
                    readers.read_json_lines(root / "data" / "web.jsonl"), progress, expected
                )

            files._Loader.segment_lines = python_path
            try:
                result = files.ingest_source(store, project, "web")
            finally:
                files._Loader.segment_lines = original
        events = store.execute(
            "SELECT * EXCLUDE (received_at, timestamp, traits, properties, context), "
            "CASE WHEN timestamp = received_at THEN 'received_at' ELSE CAST(timestamp AS VARCHAR) END, "
            "traits, properties, context FROM events ORDER BY line"
        ).fetchall()
        letters = store.execute(
            "SELECT line, field, reason, raw FROM dead_letters ORDER BY line"
        ).fetchall()
    return result, events, letters


def _comparable(row):
    *head, traits, properties, context = row
    return (*head, *(None if j is None else json.loads(j) for j in (traits, properties, context)))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segment_bulk")
    return _load(tmp, bulk=True), _load(tmp, bulk=False)


def test_bulk_path_gives_the_rows_of_the_python_path(both):
    (result, events, _), (py_result, py_events, _) = both
    assert len(events) > 20
    assert [_comparable(r) for r in events] == [_comparable(r) for r in py_events]
    assert (result.rows_read, result.loaded, result.duplicates, result.rejected) == (
        py_result.rows_read, py_result.loaded, py_result.duplicates, py_result.rejected)  # fmt: skip


def test_bulk_path_gives_the_dead_letters_of_the_python_path(both):
    (_, _, letters), (_, _, py_letters) = both
    assert len(letters) > 10
    assert letters == py_letters


def test_plain_json_is_stored_as_orjson_writes_it(both):
    (_, events, _), (_, py_events, _) = both
    by_id = {r[0]: r for r in py_events}
    plain = [r for r in events if r[0] in ("m1", "m4", "m26")]
    assert len(plain) == 3
    for row in plain:
        assert row[-3:] == by_id[row[0]][-3:]
