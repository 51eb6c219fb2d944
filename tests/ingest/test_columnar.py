"""A batch validated at once in columns (`batch_table`) gives exactly the rows of validating
each message alone (`fast_values`, else `normalize_values`), in batch order, and leaves every
message it cannot decide to that per-message validation."""

from __future__ import annotations

import random
from datetime import datetime

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panorama.ingest.columnar import Request, _times, batch_table, batch_tables
from panorama.ingest.segment import (
    EVENT_COLUMNS,
    MessageError,
    SlowPath,
    fast_values,
    normalize_values,
    parse_time,
)

RECEIVED = datetime(2024, 5, 1, 10, 0, 3)
_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode


def _one_by_one(raw, sent_at):
    """The per-message validation: a row tuple, or the MessageError naming the field."""
    try:
        return fast_values(raw, source="web", received_at=RECEIVED, batch_sent_at=sent_at)
    except (SlowPath, MessageError, msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        return normalize_values(orjson.loads(bytes(raw)), source="web", received_at=RECEIVED,
                                correct_skew=True, batch_sent_at=sent_at)  # fmt: skip
    except MessageError as exc:
        return exc


def _check_batch(messages: list[dict], sent_at: datetime | None) -> list[int]:
    raws = _raws(orjson.dumps(messages))
    table, left = batch_table(raws, source="web", received_at=RECEIVED, batch_sent_at=sent_at)
    assert left == sorted(left)
    decided = [i for i in range(len(raws)) if i not in set(left)]
    assert table.num_rows == len(decided)
    assert table.schema.names == list(EVENT_COLUMNS)
    for index, row in zip(decided, table.to_pylist(), strict=True):
        expected = _one_by_one(raws[index], sent_at)
        assert not isinstance(expected, Exception), (messages[index], expected)
        assert tuple(row.values()) == expected, messages[index]
    return left


# What SDKs send, and the unusual shapes around it.
BASE = {
    "type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a1",
    "timestamp": "2024-05-01T09:59:58.123Z",
    "properties": {"revenue": 12.5, "currency": "EUR", "product_id": "sku-1", "quantity": 2},
    "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js"}},
}  # fmt: skip
VARIANTS = [
    {"type": "identify", "event": None, "traits": {"email": " A@x.com ", "phone": "+44 1234"}},
    {"type": "identify", "traits": {"name": "A"}, "context": {"traits": {"email": "c@x.com"}}},
    {"type": "identify", "context": {"traits": {"email": "c@x.com"}}},  # RudderStack: one by one
    {"type": "page", "name": "  Home "},
    {"type": "screen", "name": ""},
    {"type": "group", "groupId": "g1", "traits": {"name": "Acme"}},
    {"type": "group", "groupId": ""},
    {"type": "alias", "previousId": "old"},
    {"type": "alias"},
    {"type": "Track"},
    {"type": None},
    {"timestamp": "2024-05-01T10:00:00+02:00"},
    {"timestamp": "2024-05-01T10:00:00"},
    {"timestamp": "2024-05-01 10:00"},
    {"timestamp": 1714557600},
    {"timestamp": "2024-02-30T10:00:00Z"},
    {"timestamp": "1899-12-31T23:00:00Z"},
    {"timestamp": "2200-12-31T23:00:00-05:00"},
    {"timestamp": "2024-05-01T10:00:00.1234567Z"},
    {"timestamp": " 2024-05-01T10:00:00z"},
    {"timestamp": None, "originalTimestamp": "2024-05-01T09:00:00Z"},
    {"originalTimestamp": "2024-05-01T09:00:00Z", "sentAt": "2024-05-01T09:00:05Z"},
    {"sentAt": "2024-05-01T10:00:02.5-00:00"},
    {"receivedAt": "garbage"},
    {"messageId": None},
    {"messageId": ""},
    {"messageId": 42},
    {"userId": 123},
    {"userId": "", "anonymousId": "a2"},
    {"userId": None, "anonymousId": None},
    {"userId": True},
    {"event": "  "},
    {"event": 5},
    {"properties": {"price": "9,90"}},
    {"properties": {"price": True}},
    {"properties": {"revenue": None, "total": 12}},
    {"properties": {"currency": 5}},
    {"properties": {"category": {"a": 1}}},
    {"properties": {}},
    {"properties": None},
    {"properties": [1]},
    {"traits": "x"},
    {"context": {"traits": {"phone": "+1 555"}}},
    {"context": {"consent": {"categoryPreferences": {"email": True}}}},
    {"properties": {"name": "caf\u00e9 \u2603"}},
    {"properties": {"note": "a \\u0041 escape"}},
    {"properties": {"note": 'say "hi" C:\\temp'}},  # escapes, none of them \\u
    {"traits": {}, "context": {}},
    {"traits": None, "context": None, "properties": {"revenue": 1}},
    {"context": {"page": {"title": "about traits"}, "note": "email"}},
    {},
]


def _message(rng: random.Random, i: int) -> dict:
    message = {**BASE, "messageId": f"m{i}", **rng.choice(VARIANTS)}
    return {k: v for k, v in message.items() if v is not None or rng.random() < 0.5}


@pytest.mark.parametrize("sent_at", [None, datetime(2024, 5, 1, 10, 0, 2), datetime(2024, 5, 1, 9, 0)])
def test_rows_equal_the_per_message_validation(sent_at):
    rng = random.Random(7)
    left_total = 0
    for trial in range(40):
        messages = [_message(rng, trial * 100 + i) for i in range(rng.choice((1, 5, 100)))]
        left_total += len(_check_batch(messages, sent_at))
    assert left_total > 0  # the unusual messages were left to the per-message validation


def test_every_variant_alone_and_in_a_batch():
    for sent_at in (None, datetime(2024, 5, 1, 9, 0)):
        for i, variant in enumerate(VARIANTS):
            _check_batch([{**BASE, "messageId": f"v{i}", **variant}], sent_at)
        _check_batch([{**BASE, "messageId": f"v{i}", **v} for i, v in enumerate(VARIANTS)], sent_at)


def test_requests_validated_together_equal_each_alone():
    # the worker validates the requests it has in hand at once: each gets the rows (and the
    # messages left) it gets alone, with its own source, receivedAt and batch sentAt
    rng = random.Random(11)
    for trial in range(15):
        requests = []
        for r in range(rng.choice((1, 2, 5))):
            messages = [_message(rng, trial * 1000 + r * 100 + i) for i in range(rng.choice((0, 1, 7, 60)))]
            received = datetime(2024, 5, 1, 10, rng.randrange(60), rng.randrange(60))
            sent_at = rng.choice((None, datetime(2024, 5, 1, 9, 0), received))
            requests.append(Request(_raws(orjson.dumps(messages)), rng.choice(("web", "app")), received, sent_at))
        together = batch_tables(requests)
        assert len(together) == len(requests)
        for request, (table, left) in zip(requests, together, strict=True):
            alone, alone_left = batch_table(request.raws, source=request.source,
                                            received_at=request.received_at,
                                            batch_sent_at=request.batch_sent_at)  # fmt: skip
            assert left == alone_left
            assert table.to_pylist() == alone.to_pylist()


def test_usual_messages_are_decided_in_columns_and_unusual_ones_left():
    messages = [{**BASE, "messageId": "ok"},
                {**BASE, "messageId": "bad", "timestamp": "nope"},
                {**BASE, "messageId": "text-price", "properties": {"price": "9.90"}},
                {**BASE, "messageId": "ok2", "type": "identify", "traits": {"email": "x@y.z"}}]  # fmt: skip
    raws = _raws(orjson.dumps(messages))
    table, left = batch_table(raws, source="web", received_at=RECEIVED)
    assert left == [1, 2]
    assert table.column("message_id").to_pylist() == ["ok", "ok2"]
    assert table.column("identifiers").to_pylist()[1] == [
        {"type": "user_id", "value": "u1"}, {"type": "anonymous_id", "value": "a1"},
        {"type": "email", "value": "x@y.z"}]  # fmt: skip


def test_an_oversized_message_is_left_to_the_size_check():
    big = {**BASE, "messageId": "big", "properties": {"blob": "x" * 40_000}}
    raws = _raws(orjson.dumps([big, {**BASE, "messageId": "small"}]))
    table, left = batch_table(raws, source="web", received_at=RECEIVED)
    assert left == [0] and table.column("message_id").to_pylist() == ["small"]


def test_skew_is_corrected_from_the_batch_sent_at():
    # the client's clock is an hour behind: timestamp = receivedAt - (sentAt - originalTimestamp)
    messages = [{**BASE, "messageId": "s", "timestamp": None,
                 "originalTimestamp": "2024-05-01T08:59:58Z"}]  # fmt: skip
    raws = _raws(orjson.dumps(messages))
    table, _ = batch_table(raws, source="web", received_at=RECEIVED,
                           batch_sent_at=datetime(2024, 5, 1, 9, 0, 3))  # fmt: skip
    assert table.column("timestamp")[0].as_py() == datetime(2024, 5, 1, 9, 59, 58)


# Arrow's ISO 8601 cast reads what `parse_time` reads, the same way, or fails (then every
# value goes through `parse_time`): near-ISO strings, one or two characters changed.
_NEAR_ISO = st.builds(
    lambda base, edits: _edit(base, edits),
    st.sampled_from(["2024-05-01T10:00:00.123+02:00", "2024-05-01T10:00:00Z",
                     "2024-05-01 10:00:00", "2199-12-31T23:59:59.999999-05:00",
                     "1900-01-01T00:30:00+01:00", "2024-05-01"]),  # fmt: skip
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.sampled_from("0123456789-:T .Z+zW,")),
             max_size=3),  # fmt: skip
)


def _edit(text: str, edits) -> str:
    chars = list(text)
    for op, at, char in edits:
        at = min(at, len(chars))
        if op == 0 and at < len(chars):
            chars[at] = char
        elif op == 1 and at < len(chars):
            del chars[at]
        else:
            chars.insert(at, char)
    return "".join(chars)


def _parse_or_none(value):
    try:
        return parse_time(value, "timestamp")
    except MessageError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(_NEAR_ISO, min_size=1, max_size=6))
def test_timestamps_in_columns_equal_parse_time(values):
    bad = np.zeros(len(values), dtype=bool)
    parsed = _times(list(values), bad).tolist()
    for value, got, rejected in zip(values, parsed, bad, strict=True):
        expected = _parse_or_none(value)
        if rejected:
            assert expected is None, value
        else:
            assert got == expected, value


def test_a_value_out_of_range_rejects_only_its_row():
    bad = np.zeros(3, dtype=bool)
    parsed = _times(["2024-05-01T10:00:00Z", "2201-01-01T00:00:00Z", None], bad)
    assert bad.tolist() == [False, True, False]
    assert parsed.tolist() == [datetime(2024, 5, 1, 10), None, None]
