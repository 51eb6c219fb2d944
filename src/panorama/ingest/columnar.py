"""Segment validation of a whole batch request at once, into Arrow columns.

Batches are where the events are (SDKs send up to 500 KB per request), and validating them a
message at a time (`fast_values`: a tuple per event, then a conversion of those tuples to
Arrow) cost ~20 µs of CPU per event, more than DuckDB's insert of it. `batch_table` reads
each message's fields in one plain pass and does the rest a column at a time with Arrow
kernels: timestamps, clock-skew correction, identifiers, promoted properties.

It gives exactly the rows `fast_values` (and so `normalize_values`) gives, and returns the
indexes of the messages it leaves to the caller: those `fast_values` would leave to the full
validation too, and values of another type than the usual one (a numeric id, an epoch
timestamp, `"price": "9.90"`). The caller validates those one at a time, so every error is
still named per message. `batch_tables` does the same for several requests at once (a
validation process's requests in hand), each request's rows as they are alone.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
_EARLIEST = datetime(1900, 1, 1)  # parse_time's range: years 1900-2200
_LATEST = datetime(2201, 1, 1)
_TOLERANCE = pa.scalar(_SKEW_TOLERANCE, pa.duration("us"))
_MINUS_TOLERANCE = pa.scalar(-_SKEW_TOLERANCE, pa.duration("us"))
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
    """`batch_table` of several requests at once: each message is read on its own, the
    columns are built once for all of them (an Arrow call costs 5-25 µs whatever its length:
    ~30 of them per request are most of a 100-message request's cost) and sliced per request."""
    lefts: list[list[int]] = []
    counts: list[int] = []  # per request, its rows
    kept: list[int] = []  # per row, its message's index in its request
    fields: list[tuple] = []  # per row, the values read from its message
    promoted: list = []
    id_values: list[str] = []  # the identifiers column, flat: values, kinds, list offsets
    id_kinds: list[str] = []
    id_offsets: list[int] = [0]
    for request in requests:
        left: list[int] = []
        lefts.append(left)
        before = len(kept)
        for index, raw in enumerate(request.raws):
            if len(raw) > MAX_MESSAGE_BYTES:
                left.append(index)
                continue
            try:
                m = _decode_message(raw)
            except _DECODE_ERRORS:
                left.append(index)
                continue
            kind = m.type
            message_id, user_id, anonymous_id = m.message_id, m.user_id, m.anonymous_id
            group_id, previous_id = m.group_id, m.previous_id
            if (
                not message_id
                or not (user_id or anonymous_id)
                or (kind == "group" and not group_id)
                or (kind == "alias" and not previous_id)
            ):
                left.append(index)
                continue
            event = None
            if kind == "track":
                event = m.event.strip() if m.event.__class__ is str else None
                if not event:
                    left.append(index)
                    continue
            elif kind == "page" or kind == "screen":
                event = (m.name.strip() or None) if m.name.__class__ is str else None
            # traits, properties, context: their JSON text; None when absent, null or {}. Not
            # an object, or \\u escapes to normalise: the per-message way.
            traits, properties, context = bytes(m.traits), bytes(m.properties), bytes(m.context)
            if traits and (traits[0] != 123 or b"\\u" in traits) and traits != b"null":
                left.append(index)
                continue
            if properties and (properties[0] != 123 or b"\\u" in properties) and properties != b"null":
                left.append(index)
                continue
            if context and (context[0] != 123 or b"\\u" in context) and context != b"null":
                left.append(index)
                continue
            if len(traits) < 8 and not traits.strip(_EMPTY_OBJECT):  # also b"null"
                traits = None
            if len(properties) < 8 and not properties.strip(_EMPTY_OBJECT):
                properties = None
            if len(context) < 8 and not context.strip(_EMPTY_OBJECT):
                context = None
            context_traits = None
            if context is not None and b'"traits"' in context:
                context_traits = _decode_context(context).traits
                if context_traits.__class__ is not dict:
                    context_traits = None
                elif kind == "identify" and traits is None:
                    left.append(index)  # identify traits sent in context.traits (RudderStack)
                    continue
            if properties is None:
                values = _NO_PROMOTED
            else:
                try:
                    values = _decode_promoted(properties)
                except _DECODE_ERRORS:
                    left.append(index)
                    continue
            user_id = user_id or None
            anonymous_id = anonymous_id or None
            contact = traits is not None and (b'"email"' in traits or b'"phone"' in traits)
            if contact or context_traits is not None:
                found = {}
                if contact:
                    c = _decode_contact(traits)
                    found = {"email": c.email, "phone": c.phone}
                ctx = {"traits": context_traits} if context_traits is not None else {}
                for item in message_identifiers(user_id, anonymous_id, found, ctx):
                    id_kinds.append(item["type"])
                    id_values.append(item["value"])
            else:
                if user_id is not None:
                    id_kinds.append("user_id")
                    id_values.append(user_id)
                if anonymous_id is not None:
                    id_kinds.append("anonymous_id")
                    id_values.append(anonymous_id)
            id_offsets.append(len(id_values))
            kept.append(index)
            fields.append((
                message_id, kind, event, user_id, anonymous_id, group_id or None, previous_id or None,
                m.timestamp, m.original_timestamp, m.sent_at, m.received_at, traits, properties, context,
            ))  # fmt: skip
            promoted.append(values)
        counts.append(len(kept) - before)

    n = len(kept)
    if not n:
        return [(EVENT_SCHEMA.empty_table(), left) for left in lefts]
    (message_ids, kinds, events, user_ids, anonymous_ids, group_ids, previous_ids,
     timestamps, originals, sents, receiveds, traits_col, properties_col, context_col) = zip(*fields, strict=True)  # fmt: skip
    bad = np.zeros(n, dtype=bool)  # rows a timestamp sends the per-message way after all
    timestamp, original, sent_at, _ = (
        _times(values, bad) for values in (timestamps, originals, sents, receiveds)
    )
    received = _per_row([r.received_at for r in requests], counts)
    batch_sent = _per_row([r.batch_sent_at for r in requests], counts)
    if original.null_count == n:
        original = timestamp
    elif original.null_count:
        original = pc.coalesce(original, timestamp)
    if timestamp.null_count:
        timestamp = pc.coalesce(timestamp, original, received)
    if batch_sent is not None and sent_at.null_count:
        sent_at = pc.coalesce(sent_at, batch_sent)  # the message's sentAt, else the batch's
    timestamp = _correct_skew(timestamp, original, sent_at, received)
    sources = [r.source for r in requests]
    source = (sources[0],) * n if sources.count(sources[0]) == len(sources) else tuple(
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
        "identifiers": pa.ListArray.from_arrays(
            pa.array(id_offsets, pa.int32()),
            pa.StructArray.from_arrays(
                [pa.array(id_kinds, pa.string()), pa.array(id_values, pa.string())],
                fields=_IDENTIFIER_FIELDS,
            ),
            type=IDENTIFIER_TYPE,
        ),
        # msgspec has checked the bytes are UTF-8 JSON: Arrow takes them as text unchecked
        "traits": _texts(traits_col),
        "properties": _texts(properties_col),
        "context": _texts(context_col),
        **_promoted_columns(promoted, n),
        "file": pa.nulls(n, pa.string()),
        "line": pa.nulls(n, pa.int64()),
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


def _per_row(values: list[datetime | None], counts: list[int]) -> pa.Array | None:
    """A per-request time repeated for each of its rows (None: no request has one)."""
    if values.count(None) == len(values):
        return None
    micros = np.array([0 if v is None else _micros(v) for v in values], dtype="datetime64[us]")
    array = np.repeat(micros, counts)
    if None in values:
        mask = np.repeat(np.array([v is None for v in values]), counts)
        return pa.array(array, _TIME, mask=mask)
    return pa.array(array, _TIME)


def _strings(values: tuple) -> pa.Array:
    if values.count(None) == len(values):
        return pa.nulls(len(values), pa.string())
    return pa.array(values, pa.string())


def _texts(values: tuple) -> pa.Array:
    if values.count(None) == len(values):
        return pa.nulls(len(values), pa.string())
    return pa.array(values, pa.binary()).view(pa.string())


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _correct_skew(timestamp: pa.Array, original: pa.Array, sent_at: pa.Array,
                  received: pa.Array) -> pa.Array:  # fmt: skip
    """Segment: timestamp = receivedAt - (sentAt - originalTimestamp) where the client's clock
    is off by more than the tolerance (`sent_at`: the message's sentAt, else the batch's)."""
    n = len(timestamp)
    if original.null_count == n or sent_at.null_count == n:
        return timestamp
    drift = pc.subtract(sent_at, received)
    skewed = pc.and_(
        pc.or_(pc.greater(drift, _TOLERANCE), pc.less(drift, _MINUS_TOLERANCE)),
        original.is_valid(),
    ).fill_null(False)
    if not pc.any(skewed).as_py():
        return timestamp
    return pc.if_else(skewed, pc.subtract(received, pc.subtract(sent_at, original)), timestamp)


def _times(values: tuple, bad: np.ndarray) -> pa.Array:
    """A timestamp field's column (naive UTC). Arrow's ISO 8601 cast reads what `parse_time`
    reads, the same way, or fails (then `parse_time` reads them one by one: epoch numbers,
    lower-case "z", week dates...); a value outside 1900-2200 marks its row in `bad`."""
    n = len(values)
    if values.count(None) == n:
        return pa.nulls(n, _TIME)
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
    bounds = pc.min_max(parsed)
    lowest, highest = bounds["min"].as_py(), bounds["max"].as_py()
    if lowest is not None and (lowest < _EARLIEST or highest >= _LATEST):
        out_of_range = pc.or_(pc.less(parsed, pa.scalar(_EARLIEST, _TIME)),
                              pc.greater_equal(parsed, pa.scalar(_LATEST, _TIME)))  # fmt: skip
        bad |= out_of_range.fill_null(False).to_numpy(zero_copy_only=False)
        parsed = pc.if_else(out_of_range, pa.scalar(None, _TIME), parsed)
    return parsed


def _times_one_by_one(values: tuple, bad: np.ndarray) -> pa.Array:
    parsed = []
    for i, value in enumerate(values):
        try:
            parsed.append(parse_time(value, "timestamp"))
        except MessageError:
            bad[i] = True
            parsed.append(None)
    return pa.array(parsed, _TIME)


def _promoted_columns(promoted: list, n: int) -> dict[str, pa.Array]:
    values = dict(zip(_Promoted.__struct_fields__, zip(*map(astuple, promoted), strict=True), strict=True))
    revenue, total = values["revenue"], values["total"]
    if total.count(None) < n:
        values["revenue"] = tuple(r if r is not None else t for r, t in zip(revenue, total, strict=True))
    columns = {}
    for name in PROMOTED_PROPERTIES:
        kind = pa.float64() if name in NUMERIC_PROPERTIES else pa.string()
        column = values[name]
        columns[name] = pa.nulls(n, kind) if column.count(None) == n else pa.array(column, kind)
    return columns
