"""The HTTP API's fast path (`fast_values`, msgspec over raw JSON) gives exactly the rows of the
full validation (`normalize_values`), and hands every message it cannot decide alone back."""

from __future__ import annotations

from datetime import datetime

import msgspec
import orjson
import pytest

from panorama.ingest.segment import MessageError, SlowPath, fast_values, normalize_values

RECEIVED = datetime(2024, 5, 1, 10, 0, 3)
SENT = datetime(2024, 5, 1, 10, 0, 1)

ACCEPTED = [
    {"type": "track", "userId": "u1", "anonymousId": "a1", "messageId": "t1", "event": " Order Completed ",
     "timestamp": "2024-05-01T09:59:58.123Z",
     "properties": {"total": "1,234.5", "price": None, "category": 3, "currency": "EUR", "quantity": "2",
                    "tags": ["x"], "product_id": {"nested": 1}},
     "context": {"ip": "203.0.113.7", "page": {"url": "https://shop.example.com/"}}},
    {"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": "2024-01-01T00:00:00+02:00",
     "traits": {"email": " A@x.com ", "phone": "+44 1234", "name": "A"}},
    {"type": "page", "userId": 7, "messageId": 8, "name": " Home ", "properties": {},
     "context": {"traits": {"phone": "+1 555"}}},
    {"type": "group", "userId": "u", "groupId": "g", "messageId": "g1", "traits": {"name": "Acme"}},
    {"type": "alias", "userId": "u", "previousId": "p", "messageId": "al1"},
    {"type": "screen", "userId": "u", "messageId": "s1", "originalTimestamp": "2024-01-01T00:00:00Z",
     "sentAt": "2024-01-01T00:00:05Z"},
    {"type": "track", "userId": "u", "messageId": "r", "event": "x", "context": None,
     "properties": {"revenue": 5, "total": 9, "discount": 1.5e1}},
    {"type": "track", "userId": "", "anonymousId": "a", "messageId": "e", "event": "x",
     "timestamp": 1714557600123},
]  # fmt: skip

FULL_PATH = [
    {"type": "identify", "userId": "u1", "messageId": "i2", "context": {"traits": {"email": "c@x.com"}}},
    {"type": "track", "userId": "u", "messageId": "bad1", "event": ""},
    {"type": "track", "userId": "u", "messageId": "bad2", "event": "x", "properties": {"price": "abc"}},
    {"type": "track", "userId": "u", "messageId": "bad3", "event": "x", "timestamp": "nope"},
    {"type": "Track", "userId": "u", "messageId": "upper", "event": "x"},
    {"type": "track", "userId": True, "messageId": "bool", "event": "x"},
    {"type": "track", "userId": "u", "event": "no messageId"},
    {"type": "track", "userId": "u", "messageId": "list", "event": "x", "properties": [1]},
    {"type": "identify", "userId": "u", "messageId": "str", "traits": "x"},
    {"type": "track", "messageId": "nobody", "event": "x"},
]  # fmt: skip


def _full(raw: bytes):
    try:
        return normalize_values(orjson.loads(raw), source="web", received_at=RECEIVED,
                                correct_skew=True, batch_sent_at=SENT)  # fmt: skip
    except MessageError as exc:
        return exc


def _json_or_value(value):
    return orjson.loads(value) if isinstance(value, str) and value[:1] == "{" else value


@pytest.mark.parametrize("message", ACCEPTED, ids=lambda m: str(m["messageId"]))
def test_fast_rows_equal_the_full_validation(message):
    raw = orjson.dumps(message)
    fast = fast_values(raw, source="web", received_at=RECEIVED, batch_sent_at=SENT)
    full = _full(raw)
    assert not isinstance(full, Exception)
    assert [_json_or_value(v) for v in fast] == [_json_or_value(v) for v in full]


@pytest.mark.parametrize("message", FULL_PATH, ids=lambda m: str(m.get("messageId")))
def test_what_the_fast_path_cannot_decide_goes_the_full_way(message):
    with pytest.raises((SlowPath, MessageError, msgspec.ValidationError)):
        fast_values(orjson.dumps(message), source="web", received_at=RECEIVED, batch_sent_at=SENT)


def test_unicode_escapes_are_normalised_by_the_full_path():
    raw = orjson.dumps({"type": "track", "userId": "u", "messageId": "esc", "event": "x",
                        "properties": {"name": "José"}}).replace("é".encode(), b"\\u00e9")  # fmt: skip
    with pytest.raises(SlowPath):
        fast_values(raw, source="web", received_at=RECEIVED)
    assert orjson.loads(_full(raw)[14]) == {"name": "José"}
