"""Segment-spec messages (identify, track, page, screen, group, alias) → rows of the event log.

One validation for both paths: a JSON-lines file of messages (`kind: segment`) and the HTTP
Tracking API. A message that breaks the spec raises `MessageError` naming the field.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from panorama.store.schema import NUMERIC_PROPERTIES, PROMOTED_PROPERTIES

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# Segment's limit per message.
MAX_MESSAGE_BYTES = 32 * 1024
# Skew corrections smaller than this are clock noise, not skew.
_SKEW_TOLERANCE = timedelta(seconds=1)

EVENT_COLUMNS = (
    "message_id", "type", "event", "source", "user_id", "anonymous_id", "group_id",
    "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at",
    "identifiers", "traits", "properties", "context", *PROMOTED_PROPERTIES, "file", "line",
)  # fmt: skip


class MessageError(ValueError):
    """A message that breaks the Segment spec; `field` names where."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_time(value: Any, field: str) -> datetime | None:
    """ISO 8601 (with or without zone, 'Z' allowed) or epoch seconds/milliseconds → naive UTC."""
    if isinstance(value, str):  # the usual case first: this runs several times per event
        text = value.strip()
        if not text:
            return None
        try:
            # Python >= 3.11 reads a trailing "Z"; a lower-case "z" is rewritten
            parsed = datetime.fromisoformat(text if text[-1] != "z" else text[:-1] + "+00:00")
            offset = parsed.utcoffset()
            if offset is not None:
                parsed = (parsed - offset if offset else parsed).replace(tzinfo=None)
        except (ValueError, OverflowError):
            raise MessageError(field, f"{value!r} is not an ISO 8601 timestamp") from None
        if not 1900 <= parsed.year <= 2200:
            raise MessageError(field, f"{value!r} is outside the years 1900-2200")
        return parsed
    if value is None:
        return None
    if isinstance(value, bool):
        raise MessageError(field, f"expected an ISO 8601 timestamp, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            raise MessageError(field, f"epoch value {value!r} is out of range") from None
    raise MessageError(field, f"expected an ISO 8601 timestamp, got {type(value).__name__}")


def _text_id(message: dict, key: str) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageError(key, f"must be a string, got {type(value).__name__}")
    return str(value)


def _object(message: dict, key: str) -> dict:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(key, f"must be a JSON object, got {type(value).__name__}")
    return value


def _number(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MessageError(field, f"must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "")) if value.strip() else None
        except ValueError:
            pass
    raise MessageError(field, f"must be a number, got {value!r}")


def message_identifiers(user_id, anonymous_id, traits: dict, context: dict) -> list[dict]:
    """Identifiers a message carries: userId, anonymousId, and email/phone traits."""
    found: list[dict] = []
    if user_id:
        found.append({"type": "user_id", "value": user_id})
    if anonymous_id:
        found.append({"type": "anonymous_id", "value": anonymous_id})
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    for kind in ("email", "phone"):
        for holder in (traits, context_traits):
            value = holder.get(kind)
            if isinstance(value, str) and value.strip():
                item = {"type": kind, "value": value.strip()}
                if item not in found:
                    found.append(item)
    return found


def content_message_id(message: dict) -> str:
    """A deterministic id for a message that came without a messageId."""
    digest = hashlib.sha256(orjson.dumps(message, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"content-{digest[:32]}"


def normalize_message(message: dict, **options) -> dict:
    """Validate one Segment message and return an event-log row, a dict of `EVENT_COLUMNS`
    (`options`: those of `normalize_values`)."""
    return dict(zip(EVENT_COLUMNS, normalize_values(message, **options), strict=True))


_PROMOTED = tuple(PROMOTED_PROPERTIES)
_PROMOTED_SET = frozenset(PROMOTED_PROPERTIES)
_NO_PROMOTED = (None,) * len(_PROMOTED)
_PROMOTED_INDEX = {name: i for i, name in enumerate(_PROMOTED)}
_REVENUE = _PROMOTED_INDEX["revenue"]


def _promoted(properties: dict) -> tuple:
    """The promoted properties' column values (numbers checked), in `PROMOTED_PROPERTIES` order."""
    present = _PROMOTED_SET.intersection(properties)
    if not present and "total" not in properties:
        return _NO_PROMOTED
    values: list = [None] * len(_PROMOTED)
    for name in _PROMOTED:  # in column order: the first bad number is the one reported
        if name not in present:
            continue
        value = properties[name]
        if name in NUMERIC_PROPERTIES:
            values[_PROMOTED_INDEX[name]] = _number(value, f"properties.{name}")
        elif value is not None and not isinstance(value, (dict, list)):
            values[_PROMOTED_INDEX[name]] = value if isinstance(value, str) else str(value)
    if values[_REVENUE] is None and "total" in properties:
        values[_REVENUE] = _number(properties["total"], "properties.total")
    return tuple(values)


def normalize_values(
    message: dict,
    *,
    source: str,
    received_at: datetime,
    correct_skew: bool = False,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
) -> tuple:
    """Validate one Segment message and return its event-log row as a tuple in `EVENT_COLUMNS`
    order (the HTTP API builds its Arrow table from these columns directly, no dict per row).
    A message that breaks the spec raises `MessageError` naming the field.

    `batch_sent_at` is the `sentAt` of the batch envelope a message came in (SDKs set it
    there, not on each message); the message's own `sentAt` wins when it has one."""
    kind = message.get("type", default_type)
    if kind is None:
        raise MessageError("type", f"is required: one of {', '.join(MESSAGE_TYPES)}")
    if not isinstance(kind, str) or kind.lower() not in MESSAGE_TYPES:
        raise MessageError("type", f"{kind!r} is not one of {', '.join(MESSAGE_TYPES)}")
    kind = kind.lower()

    user_id = _text_id(message, "userId")
    anonymous_id = _text_id(message, "anonymousId")
    if not user_id and not anonymous_id:
        raise MessageError("userId", "a message needs a userId or an anonymousId")
    event = None
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise MessageError("event", "a track message needs an event name (string)")
        event = event.strip()
    elif kind in ("page", "screen"):
        name = message.get("name")
        event = name.strip() if isinstance(name, str) and name.strip() else None
    group_id = _text_id(message, "groupId")
    if kind == "group" and not group_id:
        raise MessageError("groupId", "a group message needs a groupId")
    previous_id = _text_id(message, "previousId")
    if kind == "alias" and not previous_id:
        raise MessageError("previousId", "an alias message needs a previousId")

    traits = _object(message, "traits")
    properties = _object(message, "properties")
    context = _object(message, "context")
    if kind == "identify" and not traits and isinstance(context.get("traits"), dict):
        traits = context["traits"]  # RudderStack SDKs send identify traits in context.traits only

    timestamp = parse_time(message.get("timestamp"), "timestamp")
    original = parse_time(message.get("originalTimestamp"), "originalTimestamp")
    sent_at = parse_time(message.get("sentAt"), "sentAt") or batch_sent_at
    stated_received = parse_time(message.get("receivedAt"), "receivedAt")
    if not correct_skew and stated_received is not None:
        received_at = stated_received
    original = original or timestamp
    if timestamp is None:
        timestamp = original or received_at
    # Segment: timestamp = receivedAt - (sentAt - originalTimestamp), when the clock is off.
    skewed = sent_at is not None and abs(sent_at - received_at) > _SKEW_TOLERANCE
    if correct_skew and skewed and original is not None:
        timestamp = received_at - (sent_at - original)

    message_id = _text_id(message, "messageId") or content_message_id(message)
    promoted = _promoted(properties) if properties else _NO_PROMOTED
    return (
        message_id, kind, event, source, user_id, anonymous_id, group_id, previous_id,
        timestamp, original, sent_at, received_at,
        message_identifiers(user_id, anonymous_id, traits, context),
        orjson.dumps(traits).decode() if traits else None,
        orjson.dumps(properties).decode() if properties else None,
        orjson.dumps(context).decode() if context else None,
        *promoted, None, None,
    )  # fmt: skip


# -- the fast path: well-formed messages straight from JSON bytes -----------------------------
#
# The HTTP API decodes messages with msgspec into a struct that keeps `traits`, `properties`
# and `context` as the raw JSON text they arrived as (no decode and re-encode of the bulk of
# each event). Only what validation needs is read. Anything unusual — a missing messageId,
# \u escapes, identify traits carried in context.traits, a value of the wrong type — raises
# `SlowPath`, and the caller validates that message with `normalize_values` instead, which
# gives the precise error. Same rows as `normalize_values` for the messages it accepts.

_Scalar = str | int | float | None
_NO_RAW = msgspec.Raw(b"")


class FastMessage(msgspec.Struct, rename="camel"):
    type: str | None = None
    user_id: _Scalar = None
    anonymous_id: _Scalar = None
    group_id: _Scalar = None
    previous_id: _Scalar = None
    message_id: _Scalar = None
    event: object = None
    name: object = None
    timestamp: object = None
    original_timestamp: object = None
    sent_at: object = None
    received_at: object = None
    traits: msgspec.Raw = _NO_RAW
    properties: msgspec.Raw = _NO_RAW
    context: msgspec.Raw = _NO_RAW
    write_key: object = None


class _Contact(msgspec.Struct):
    email: object = None
    phone: object = None


class _ContextTraits(msgspec.Struct):
    traits: object = None


_Promoted = msgspec.defstruct(
    "_Promoted", [(name, object, None) for name in (*PROMOTED_PROPERTIES, "total")]
)
_decode_message = msgspec.json.Decoder(FastMessage).decode
_decode_contact = msgspec.json.Decoder(_Contact).decode
_decode_context = msgspec.json.Decoder(_ContextTraits).decode
_decode_promoted = msgspec.json.Decoder(_Promoted).decode


class SlowPath(Exception):
    """This message needs the full validation (`normalize_values`)."""


def _raw_object(raw: msgspec.Raw) -> str | None:
    """The JSON text of an object field; None when absent, null or empty."""
    text = bytes(raw)
    if not text or text == b"null":
        return None
    if text[:1] != b"{" or b"\\u" in text:
        raise SlowPath  # not an object (the full path names the error), or escapes to normalise
    if len(text) < 8 and not text.strip(b"{} \t\r\n"):
        return None
    return text.decode()


def _fast_id(value) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def fast_values(
    raw: bytes | msgspec.Raw,
    *,
    source: str,
    received_at: datetime,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
    message: FastMessage | None = None,
) -> tuple:
    """`normalize_values(..., correct_skew=True)` for one message's JSON bytes (or its decoded
    `message`); raises `SlowPath` (or a msgspec/Message error) when it cannot decide alone."""
    m = message if message is not None else _decode_message(raw)
    kind = m.type if m.type is not None else default_type
    if kind not in MESSAGE_TYPES:  # upper case, missing or unknown: the full path
        raise SlowPath
    message_id = _fast_id(m.message_id)
    user_id = _fast_id(m.user_id)
    anonymous_id = _fast_id(m.anonymous_id)
    if message_id is None or (user_id is None and anonymous_id is None):
        raise SlowPath
    event = None
    if kind == "track":
        event = m.event
        if not isinstance(event, str) or not event.strip():
            raise SlowPath
        event = event.strip()
    elif kind in ("page", "screen"):
        name = m.name
        event = name.strip() if isinstance(name, str) and name.strip() else None
    group_id = _fast_id(m.group_id)
    previous_id = _fast_id(m.previous_id)
    if (kind == "group" and not group_id) or (kind == "alias" and not previous_id):
        raise SlowPath
    traits = _raw_object(m.traits)
    properties = _raw_object(m.properties)
    context = _raw_object(m.context)
    context_traits = _decode_context(context).traits if context and '"traits"' in context else None
    if kind == "identify" and traits is None and isinstance(context_traits, dict):
        raise SlowPath  # identify traits sent in context.traits (RudderStack)

    timestamp = parse_time(m.timestamp, "timestamp")
    original = parse_time(m.original_timestamp, "originalTimestamp")
    sent_at = parse_time(m.sent_at, "sentAt") or batch_sent_at
    parse_time(m.received_at, "receivedAt")  # validated; the server's clock is what counts
    original = original or timestamp
    if timestamp is None:
        timestamp = original or received_at
    if original is not None and sent_at is not None and abs(sent_at - received_at) > _SKEW_TOLERANCE:
        timestamp = received_at - (sent_at - original)

    contact = {}
    if traits is not None and ('"email"' in traits or '"phone"' in traits):
        c = _decode_contact(traits)
        contact = {"email": c.email, "phone": c.phone}
    ctx = {"traits": context_traits} if isinstance(context_traits, dict) else {}
    promoted = _NO_PROMOTED if properties is None else _fast_promoted(properties)
    return (
        message_id, kind, event, source, user_id, anonymous_id, group_id, previous_id,
        timestamp, original, sent_at, received_at,
        message_identifiers(user_id, anonymous_id, contact, ctx),
        traits, properties, context, *promoted, None, None,
    )  # fmt: skip


_NUMERIC_AT = frozenset(i for i, name in enumerate(_PROMOTED) if name in NUMERIC_PROPERTIES)
_NO_PROMOTED_OR_TOTAL = (None,) * (len(_PROMOTED) + 1)


def _fast_promoted(properties: str) -> tuple:
    """`_promoted` read straight from the properties' JSON (only the promoted keys decoded)."""
    values = msgspec.structs.astuple(_decode_promoted(properties))
    if values == _NO_PROMOTED_OR_TOTAL:
        return _NO_PROMOTED
    out = list(values[:-1])
    for i, value in enumerate(out):
        if value is None:
            continue
        if i in _NUMERIC_AT:
            out[i] = _number(value, f"properties.{_PROMOTED[i]}")
        elif isinstance(value, (dict, list)):
            out[i] = None
        elif not isinstance(value, str):
            out[i] = str(value)
    if out[_REVENUE] is None and values[-1] is not None:
        out[_REVENUE] = _number(values[-1], "properties.total")
    return tuple(out)
