"""Segment-spec messages (identify, track, page, screen, group, alias) → rows of the event log.

One validation for both paths: a JSON-lines file of messages (`kind: segment`) and the HTTP
Tracking API. A message that breaks the spec raises `MessageError` naming the field.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

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


def normalize_message(
    message: dict,
    *,
    source: str,
    received_at: datetime,
    correct_skew: bool = False,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
) -> dict:
    """Validate one Segment message and return an event-log row (see `EVENT_COLUMNS`).

    `batch_sent_at` is the `sentAt` of the batch envelope a message came in (SDKs set it
    there, not on each message); the message's own `sentAt` wins when it has one."""
    values = normalize_values(message, source=source, received_at=received_at,
                              correct_skew=correct_skew, default_type=default_type,
                              batch_sent_at=batch_sent_at)  # fmt: skip
    return dict(zip(EVENT_COLUMNS, values, strict=True))


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
    """`normalize_message` as a tuple in `EVENT_COLUMNS` order: the hot path of the HTTP API
    builds its Arrow table from these columns directly (no dict per row)."""
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
