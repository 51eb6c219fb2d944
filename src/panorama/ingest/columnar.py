"""Segment validation of a whole batch request at once, into Arrow columns.

Batches are where the events are (SDKs send up to 500 KB per request), and validating them a
message at a time (`fast_values`: a tuple per event, then a conversion of those tuples to
Arrow) cost ~20 µs of CPU per event, more than DuckDB's insert of it. `batch_table` decodes a
request's messages in one msgspec call and does the rest a column at a time: the rules as
list searches, the JSON objects' texts joined and searched at once, timestamps, clock-skew
correction, identifiers and promoted properties with Arrow kernels (~5 µs per event).

It gives exactly the rows `fast_values` (and so `normalize_values`) gives, and returns the
indexes of the messages it leaves to the caller: those `fast_values` would leave to the full
validation too, and values of another type than the usual one (a numeric id, an epoch
timestamp, `"price": "9.90"`). The caller validates those one at a time, so every error is
still named per message. `batch_tables` does the same for several requests at once (a
validation process's requests in hand), each request's rows as they are alone.
"""

from __future__ import annotations

import functools
import itertools
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

import msgspec
import numpy as np
import pyarrow as pa
from msgspec.structs import astuple

from panorama.ingest.log import EVENT_SCHEMA, IDENTIFIER_TYPE
from panorama.ingest.segment import (
    _SKEW_TOLERANCE,
    EVENT_COLUMNS,
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    PROMOTED_PROPERTIES,
    MessageError,
    _decode_contact,
    _decode_context,
    message_identifiers,
    parse_time,
)
from panorama.store.schema import NUMERIC_PROPERTIES

_TIME = pa.timestamp("us")
_UTC = pa.timestamp("us", "UTC")
_EARLIEST_64 = np.datetime64("1900-01-01", "us")  # parse_time's range: years 1900-2200
_LATEST_64 = np.datetime64("2201-01-01", "us")
_NAT = np.datetime64("NaT", "us")
_SKEW = np.timedelta64(_SKEW_TOLERANCE // timedelta(microseconds=1), "us")
_EMPTY_OBJECT = b"{} \t\r\nul"  # what an empty object (or null) consists of
_IDENTIFIER_FIELDS = list(IDENTIFIER_TYPE.value_type)
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


class _Message(msgspec.Struct, rename="camel"):
    """A message as this module decides it: the types checked by msgspec as it decodes (a
    message with another type - an upper-case `type`, a numeric id, an epoch timestamp - fails
    the decode and goes the per-message way, which converts or names it)."""

    type: Literal[MESSAGE_TYPES]  # the six types, lower case
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    event: object = None
    name: object = None
    timestamp: str | None = None
    original_timestamp: str | None = None
    sent_at: str | None = None
    received_at: str | None = None
    traits: msgspec.Raw = msgspec.Raw(b"")
    properties: msgspec.Raw = msgspec.Raw(b"")
    context: msgspec.Raw = msgspec.Raw(b"")


_decode_message = msgspec.json.Decoder(_Message).decode


# Promoted properties as their columns' types: a value of another type fails the decode and
# the message goes the per-message way (which converts or names it).
_Promoted = msgspec.defstruct(
    "_BatchPromoted",
    [(name, (float | None) if name in NUMERIC_PROPERTIES else (str | None), None)
     for name in (*PROMOTED_PROPERTIES, "total")],
)  # fmt: skip
_NO_PROMOTED = _Promoted()
_decode_promoted = msgspec.json.Decoder(_Promoted).decode
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)


def batch_table(
    raws: list[msgspec.Raw],
    *,
    source: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
) -> tuple[pa.Table, list[int]]:
    """The rows of a batch's messages (`EVENT_SCHEMA`, in batch order) and the indexes of the
    messages left to the per-message validation (ascending)."""
    return batch_tables([Request(raws, source, received_at, batch_sent_at)])[0]


class Request(NamedTuple):
    """One batch request's messages and what they are validated with."""

    raws: list[msgspec.Raw]
    source: str
    received_at: datetime
    batch_sent_at: datetime | None = None


def batch_tables(requests: list[Request]) -> list[tuple[pa.Table, list[int]]]:
    """`batch_table` of several requests at once: each request's messages decoded in one call,
    the rules checked and the columns built a column at a time for all of them (a Python pass
    per message cost ~5 µs of the ~10 a batch event took; an Arrow call costs 5-25 µs whatever
    its length), then sliced per request."""
    lefts: list[list[int]] = []
    counts: list[int] = []  # per request, its rows
    kept: list[int] = []  # per row, its message's index in its request
    messages: list[_Message] = []
    for request in requests:
        decoded, indexes, left = _decoded(request.raws)
        messages += decoded
        kept += indexes
        lefts.append(left)
        counts.append(len(decoded))
    n = len(messages)
    if not n:
        return [(EVENT_SCHEMA.empty_table(), left) for left in lefts]
    bad = np.zeros(n, dtype=bool)  # rows that go the per-message way after all

    (kinds, message_ids, user_ids, anonymous_ids, group_ids, previous_ids, events, names,
     timestamps, originals, sents, receiveds, traits, properties, context) = map(list, zip(*map(astuple, messages), strict=True))  # fmt: skip
    user_ids, anonymous_ids, group_ids, previous_ids = (
        [value or None for value in values] if "" in values else values
        for values in (user_ids, anonymous_ids, group_ids, previous_ids)
    )  # an empty id is none
    if kinds.count("track") == n:
        events = [e.strip() if e.__class__ is str else None for e in events]
    else:
        events = [
            (e.strip() if e.__class__ is str else None) if kind == "track"
            else ((name.strip() or None) if name.__class__ is str else None)
            if kind == "page" or kind == "screen" else None
            for kind, e, name in zip(kinds, events, names, strict=True)
        ]  # fmt: skip
    if "" in message_ids:
        bad[[i for i, value in enumerate(message_ids) if not value]] = True
    if None in user_ids and None in anonymous_ids:
        bad[[i for i, (u, a) in enumerate(zip(user_ids, anonymous_ids, strict=True)) if u is None and a is None]] = True  # fmt: skip
    for kind, needed in (("group", group_ids), ("alias", previous_ids), ("track", events)):
        if kind in kinds and (None in needed or "" in needed):
            bad[[i for i, (k, v) in enumerate(zip(kinds, needed, strict=True)) if k == kind and not v]] = True  # fmt: skip

    # traits, properties, context: their JSON text; null when absent, null or {}. Not an
    # object, or \\u escapes to normalise: the per-message way.
    traits, properties, context = (_Texts(raws, bad) for raws in (traits, properties, context))
    context_traits: dict[int, dict] = {}  # row -> its context.traits, where that is an object
    if b'"traits"' in context.joined:
        for i in context.rows_containing(b'"traits"'):
            found = _decode_context(context.raws[i]).traits
            if found.__class__ is dict:
                context_traits[i] = found
                if kinds[i] == "identify" and not traits.valid[i]:
                    bad[i] = True  # identify traits sent in context.traits (RudderStack)
    contacts = set()
    if b'"email"' in traits.joined or b'"phone"' in traits.joined:
        contacts = set(traits.rows_containing(b'"email"')) | set(traits.rows_containing(b'"phone"'))
    promoted = _promoted(properties, bad)
    if contacts or context_traits:
        identifiers = _identifiers_per_row(user_ids, anonymous_ids, traits, contacts, context_traits)
    else:
        identifiers = _identifiers(user_ids, anonymous_ids)

    timestamp, original, sent_at, _ = (
        _times(values, bad) for values in (timestamps, originals, sents, receiveds)
    )
    timestamp, original, sent_at, received = _timeline(
        timestamp, original, sent_at,
        _per_row([r.received_at for r in requests], counts),
        _per_row([r.batch_sent_at for r in requests], counts),
    )  # fmt: skip
    sources = [r.source for r in requests]
    source = [sources[0]] * n if sources.count(sources[0]) == len(sources) else list(
        itertools.chain.from_iterable((s,) * c for s, c in zip(sources, counts, strict=True))
    )

    columns = {
        "message_id": _strings(message_ids),
        "type": _strings(kinds),
        "event": _strings(events),
        "source": _strings(source),
        "user_id": _strings(user_ids),
        "anonymous_id": _strings(anonymous_ids),
        "group_id": _strings(group_ids),
        "previous_id": _strings(previous_ids),
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": received,
        "identifiers": identifiers,
        "traits": traits.array(),
        "properties": properties.array(),
        "context": context.array(),
        **_promoted_columns(promoted, n),
        "file": _nulls(n, pa.string()),
        "line": _nulls(n, pa.int64()),
    }
    table = pa.Table.from_arrays([columns[name] for name in EVENT_COLUMNS], schema=EVENT_SCHEMA)
    if bad.any():
        table = table.filter(pa.array(~bad))
    results = []
    row = out = 0  # the request's first row, before and after dropping the bad rows
    for left, count in zip(lefts, counts, strict=True):
        dropped = np.flatnonzero(bad[row : row + count])
        if len(dropped):
            left = sorted(left + [kept[row + i] for i in dropped])
        results.append((table.slice(out, count - len(dropped)), left))
        row += count
        out += count - len(dropped)
    return results


_decode_messages = msgspec.json.Decoder(list[_Message]).decode
_decode_promoteds = msgspec.json.Decoder(list[_Promoted]).decode


def _decoded(raws: list[msgspec.Raw]) -> tuple[list[_Message], list[int], list[int]]:
    """A request's messages as `_Message`s (in one call when they all decode), their indexes,
    and the indexes of those left to the per-message validation."""
    if max(map(len, raws), default=0) <= MAX_MESSAGE_BYTES:
        try:
            return _decode_messages(b"[%b]" % b",".join(raws)), list(range(len(raws))), []
        except _DECODE_ERRORS:
            pass
    messages, kept, left = [], [], []
    for index, raw in enumerate(raws):
        if len(raw) > MAX_MESSAGE_BYTES:
            left.append(index)
            continue
        try:
            messages.append(_decode_message(raw))
        except _DECODE_ERRORS:
            left.append(index)
            continue
        kept.append(index)
    return messages, kept, left


class _Texts:
    """One JSON object field of every row (traits, properties, context): the texts joined,
    searched and made a column at once. `valid` is False where the field is absent, null or
    {} (the column's value is null there); a row where it is not an object, or has \\u escapes
    to normalise, is marked in `bad`."""

    def __init__(self, raws: list[msgspec.Raw], bad: np.ndarray):
        self.raws = raws
        n = len(raws)
        lengths = np.fromiter(map(len, raws), dtype=np.int64, count=n)
        self.offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=self.offsets[1:], dtype=np.int32)
        self.joined = b"".join(raws)
        self.valid = lengths > 0
        if not self.valid.any():
            return
        first = np.zeros(n, dtype=np.uint8)
        first[self.valid] = np.frombuffer(self.joined, np.uint8)[self.offsets[:-1][self.valid]]
        for i in np.flatnonzero(self.valid & ((first != 123) | (lengths < 8))):
            text = bytes(raws[i])
            if not text.strip(_EMPTY_OBJECT):  # {}, null
                self.valid[i] = False
            elif first[i] != 123:
                self.valid[i] = False
                bad[i] = True
        if b"\\" in self.joined and b"\\u" in self.joined:  # (one byte is searched faster)
            rows = self.rows_containing(b"\\u")
            bad[rows] = True
            self.valid[rows] = False

    def rows_containing(self, needle: bytes) -> list[int]:
        """The valid rows whose text contains `needle`."""
        rows, at = set(), self.joined.find(needle)
        while at >= 0:
            row = int(np.searchsorted(self.offsets, at, side="right")) - 1
            rows.add(row)
            at = self.joined.find(needle, int(self.offsets[row + 1]))
        return sorted(i for i in rows if self.valid[i] and needle in bytes(self.raws[i]))

    def array(self) -> pa.Array:
        """The column (msgspec has checked the bytes are UTF-8 JSON: Arrow takes them as text
        unchecked)."""
        n = len(self.raws)
        valid = int(self.valid.sum())
        if not valid:
            return _nulls(n, pa.string())
        validity = None if valid == n else pa.array(self.valid).buffers()[1]
        buffers = [validity, pa.py_buffer(self.offsets), pa.py_buffer(self.joined)]
        return pa.Array.from_buffers(pa.string(), n, buffers, null_count=n - valid)


def _promoted(properties: _Texts, bad: np.ndarray) -> list:
    """Each row's promoted properties (a value of another type than its column's marks the
    row in `bad`)."""
    n = len(properties.raws)
    rows = np.flatnonzero(properties.valid)
    if not len(rows):
        return [_NO_PROMOTED] * n
    raws = properties.raws if len(rows) == n else [properties.raws[i] for i in rows]
    try:
        values = _decode_promoteds(b"[%b]" % b",".join(raws))
    except _DECODE_ERRORS:
        values = []
        for i, raw in zip(rows, raws, strict=True):
            try:
                values.append(_decode_promoted(raw))
            except _DECODE_ERRORS:
                bad[i] = True
                values.append(_NO_PROMOTED)
    if len(rows) == n:
        return values
    promoted = [_NO_PROMOTED] * n
    for i, value in zip(rows.tolist(), values, strict=True):
        promoted[i] = value
    return promoted


_ID_KINDS = ("user_id", "anonymous_id")


def _identifiers(user_ids: list, anonymous_ids: list) -> pa.Array:
    """The identifiers column where messages carry only their userId and anonymousId."""
    n = len(user_ids)
    values = list(itertools.chain.from_iterable(zip(user_ids, anonymous_ids, strict=True)))
    kinds = _ID_KINDS * n
    if None in values:
        present = [v is not None for v in values]
        values = list(itertools.compress(values, present))
        kinds = list(itertools.compress(kinds, present))
        per_row = np.array(present).reshape(n, 2).sum(axis=1)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(per_row, out=offsets[1:], dtype=np.int32)
    else:
        offsets = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
    return _identifier_array(offsets, kinds, values)


def _identifiers_per_row(user_ids: list, anonymous_ids: list, traits: _Texts, contacts: set,
                         context_traits: dict) -> pa.Array:  # fmt: skip
    """The identifiers column where some messages carry an email or phone too."""
    kinds, values, offsets = [], [], [0]
    for i, (user_id, anonymous_id) in enumerate(zip(user_ids, anonymous_ids, strict=True)):
        if i in contacts or i in context_traits:
            found = {}
            if i in contacts:
                c = _decode_contact(traits.raws[i])
                found = {"email": c.email, "phone": c.phone}
            ctx = {"traits": context_traits[i]} if i in context_traits else {}
            for item in message_identifiers(user_id, anonymous_id, found, ctx):
                kinds.append(item["type"])
                values.append(item["value"])
        else:
            if user_id is not None:
                kinds.append("user_id")
                values.append(user_id)
            if anonymous_id is not None:
                kinds.append("anonymous_id")
                values.append(anonymous_id)
        offsets.append(len(values))
    return _identifier_array(offsets, kinds, values)


def _identifier_array(offsets, kinds: list, values: list) -> pa.Array:
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [pa.array(kinds, pa.string()), pa.array(values, pa.string())],
            fields=_IDENTIFIER_FIELDS,
        ),
        type=IDENTIFIER_TYPE,
    )


def _per_row(values: list[datetime | None], counts: list[int]) -> np.ndarray:
    """A per-request time repeated for each of its rows (NaT where a request has none)."""
    micros = np.array([None if v is None else _micros(v) for v in values], dtype="datetime64[us]")
    return np.repeat(micros, counts)


def _strings(values: tuple) -> pa.Array:
    if values.count(None) == len(values):
        return _nulls(len(values), pa.string())
    return pa.array(values, pa.string())


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _timeline(ts: np.ndarray, orig: np.ndarray, sent: np.ndarray, received: np.ndarray,
              batch_sent: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:  # fmt: skip
    """The time columns as stored: originalTimestamp defaults to timestamp, timestamp to
    originalTimestamp then receivedAt, sentAt to the batch's; and Segment's clock-skew
    correction: timestamp = receivedAt - (sentAt - originalTimestamp) where the client's clock
    is off by more than the tolerance. In numpy (NaT for null): a tenth of the cost of the
    dozen Arrow kernels it takes on a request's rows."""
    orig = np.where(np.isnat(orig), ts, orig)
    ts = np.where(np.isnat(ts), np.where(np.isnat(orig), received, orig), ts)
    sent = np.where(np.isnat(sent), batch_sent, sent)
    drift = sent - received  # NaT without a sentAt: compares False
    skewed = ((drift > _SKEW) | (drift < -_SKEW)) & ~np.isnat(orig)
    if skewed.any():
        ts = np.where(skewed, received - (sent - orig), ts)
    return _time_array(ts), _time_array(orig), _time_array(sent), _time_array(received)


def _time_array(values: np.ndarray) -> pa.Array:
    missing = np.isnat(values)
    if not missing.any():  # (its buffer as it is: ~3 vs ~15 µs)
        return pa.Array.from_buffers(_TIME, len(values), [None, pa.py_buffer(values.view(np.int64))])
    if missing.all():
        return _nulls(len(values), _TIME)
    return pa.array(values, _TIME, mask=missing)


@functools.lru_cache(maxsize=64)
def _nulls(n: int, kind: pa.DataType) -> pa.Array:
    """A column of n nulls (immutable: made once per length and type)."""
    return pa.nulls(n, kind)


def _times(values: list, bad: np.ndarray) -> np.ndarray:
    """A timestamp field's values (naive UTC, NaT where null). Arrow's ISO 8601 cast reads
    what `parse_time` reads, the same way, or fails (then `parse_time` reads them one by one:
    epoch numbers, lower-case "z", week dates...); a value outside 1900-2200 marks its row in
    `bad`."""
    n = len(values)
    if values.count(None) == n:
        return np.full(n, _NAT)
    try:
        text = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # numbers (epoch seconds) among them
        return _times_one_by_one(values, bad)
    try:
        parsed = text.cast(_UTC).view(_TIME)  # with a zone offset ("Z", +02:00)
    except pa.ArrowInvalid:
        try:
            parsed = text.cast(_TIME)  # without one (UTC)
        except pa.ArrowInvalid:
            return _times_one_by_one(values, bad)
    times = parsed.to_numpy(zero_copy_only=False)
    out_of_range = (times < _EARLIEST_64) | (times >= _LATEST_64)  # (NaT compares False)
    if out_of_range.any():
        bad |= out_of_range
        times = np.where(out_of_range, _NAT, times)
    return times


def _times_one_by_one(values: list, bad: np.ndarray) -> np.ndarray:
    parsed = []
    for i, value in enumerate(values):
        try:
            parsed.append(parse_time(value, "timestamp"))
        except MessageError:
            bad[i] = True
            parsed.append(None)
    return np.array(parsed, dtype="datetime64[us]")


def _promoted_columns(promoted: list, n: int) -> dict[str, pa.Array]:
    values = dict(zip(_Promoted.__struct_fields__, zip(*map(astuple, promoted), strict=True), strict=True))
    revenue, total = values["revenue"], values["total"]
    if total.count(None) < n:
        values["revenue"] = tuple(r if r is not None else t for r, t in zip(revenue, total, strict=True))
    columns = {}
    for name in PROMOTED_PROPERTIES:
        kind = pa.float64() if name in NUMERIC_PROPERTIES else pa.string()
        column = values[name]
        columns[name] = _nulls(n, kind) if column.count(None) == n else pa.array(column, kind)
    return columns
