"""The Segment-compatible HTTP Tracking API: /v1/identify, /v1/track, ..., /v1/batch.

The hot path is lean on purpose: raw body bytes (gunzipped when labelled gzip *or* when they
start with gzip's magic bytes, as some clients mislabel them), orjson, the shared Segment
validation (`panorama.ingest.segment.normalize_values`: one tuple per event, turned into
Arrow columns at once), then the group-commit writer.
No pydantic models on the way in; the OpenAPI schema is declared for /docs only.

Answers: 200 `{"success": true}` only after the events are committed; a batch whose envelope
is fine but some messages are not stores the good ones, dead-letters the others and answers
200 with `"rejected": [{"index", "messageId", "field", "reason"}, ...]`. Every error body is
JSON: `{"success": false, "code": ..., "message": ...}` (rudder-sdk-python reads `code`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec
import orjson
import pyarrow as pa

from panorama.auth.limits import SECURITY_HEADERS
from panorama.ingest.columnar import Request, batch_table, batch_tables
from panorama.ingest.journal import EncodedEvents
from panorama.ingest.keys import KeyRing, WriteKey
from panorama.ingest.log import DeadLetter, events_table_from_values, utcnow
from panorama.ingest.segment import (
    EVENT_COLUMNS,
    MAX_MESSAGE_BYTES,
    FastMessage,
    MessageError,
    SlowPath,
    fast_values,
    normalize_values,
    parse_time,
)
from panorama.ingest.writer import GroupCommitWriter, WriterClosed, check_required
from panorama.modules import optional_import

if TYPE_CHECKING:
    from panorama.server.validation import ValidationPool

log = logging.getLogger("panorama.server")

# Segment's limits: 32 KB per message, 500 KB per batch request (KiB, as its SDKs count).
MAX_BATCH_BYTES = 500 * 1024
BATCH = "batch"
# Endpoint path -> message type ("batch" for the batch endpoints), long and short forms.
ROUTES: dict[str, str] = {
    "/v1/identify": "identify",
    "/v1/track": "track",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
    "/v1/batch": BATCH,
    "/v1/import": BATCH,
    "/v1/i": "identify",
    "/v1/t": "track",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/g": "group",
    "/v1/a": "alias",
    "/v1/b": BATCH,
}

OK_BODY = b'{"success":true}'
# The headers of every Tracking API answer besides its length (both ways of answering:
# `panorama.server.app.IngestionFastPath` and `panorama.server.protocol`).
ANSWER_HEADERS = [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*"),
                  *SECURITY_HEADERS]  # fmt: skip
# Requests with at least this many events hand the writer an Arrow table instead of dicts.
TABLE_MIN_ROWS = 8
# Batch requests at least this large (decompressed) are validated in the validation
# processes (`panorama.server.validation`), when the server has them: below it, handing a
# request over costs more than it saves.
POOL_MIN_BYTES = 16 * 1024
# A request waits at most this long for its group commit before answering 503 (retryable).
COMMIT_TIMEOUT = 60.0
_GZIP_MAGIC = b"\x1f\x8b"
# Deleted people's identifiers (hashed tombstones): their messages are dropped, answered 200.
_guard = optional_import("panorama.privacy.guard")


class ApiError(Exception):
    """An answer other than 200: status, a stable `code` and a precise message."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> bytes:
        return orjson.dumps(
            {"success": False, "code": self.code, "message": self.message, **self.extra}
        )

    def __reduce__(self):  # raised in a validation process, answered by the server's
        return _api_error, (self.status, self.code, self.message, self.extra)


def _api_error(status: int, code: str, message: str, extra: dict) -> ApiError:
    return ApiError(status, code, message, **extra)


def _kb(limit: int) -> str:
    return f"{limit // 1024} KB ({limit:,} bytes)"


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Gunzip/inflate when labelled or when the bytes are gzip anyway; enforce `limit` on the result."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") and not body.startswith(_GZIP_MAGIC):
        return body
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise ApiError(415, "unsupported_encoding",
                       f"Content-Encoding {content_encoding!r} is not supported; send gzip, deflate or none")  # fmt: skip
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(
            400, "invalid_encoding", f"the body is not valid {encoding or 'gzip'} data: {exc}"
        ) from None
    if len(data) > limit:
        return data  # the caller answers 413
    if not inflater.eof:
        raise ApiError(400, "invalid_encoding", f"the {encoding or 'gzip'} body is truncated")
    return data


class _Envelope(msgspec.Struct, rename="camel"):
    batch: list[msgspec.Raw]
    sent_at: object = None
    context: object = None
    write_key: object = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_single = msgspec.json.Decoder(FastMessage).decode
# A message `fast_values` leaves to the full validation (which then names any error).
_NOT_FAST = (SlowPath, MessageError, msgspec.ValidationError, msgspec.DecodeError)


def decode_fast(kind: str, data: bytes):
    """The request decoded for the fast path (`fast_values`), or None when anything about its
    shape is unusual (the full path then parses it and names the error)."""
    try:
        if kind != BATCH:
            return _decode_single(data)
        envelope = _decode_envelope(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if envelope.context:  # batch-level context is merged into each message: the full path
        return None
    return envelope


def parse_json(data: bytes) -> dict:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not data.strip():
            raise ApiError(400, "invalid_json", "the body is empty; send a JSON object") from None
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json",
                       f"the body must be a JSON object, got {_json_type(value)}")  # fmt: skip
    return value


def _json_type(value) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return "an object"


def basic_auth_key(authorization: str | None) -> str | None:
    """The write key from `Authorization: Basic base64(key:)`, or None if there is no header."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(401, "invalid_write_key",
                       f"Authorization scheme {scheme!r} is not supported; use HTTP Basic with "
                       "the write key as username and an empty password")  # fmt: skip
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(
            401, "invalid_write_key", "the Basic credentials are not valid base64"
        ) from None
    return decoded.partition(":")[0]


@dataclass
class Outcome:
    """What a request produced: rows to store (`normalize_values` tuples, and/or a `table` of
    a batch's rows validated at once), dead letters, and the rejections to report."""

    rows: list[tuple]
    dead: list[DeadLetter]
    rejected: list[dict]
    table: pa.Table | None = None
    # The table as the journal's payload, from a validation process (`encode`): the server
    # hands it to the writer as it is (`decode` when it must read the rows after all).
    encoded: EncodedEvents | None = None

    def encode(self) -> Outcome:
        """In a validation process, before the outcome is sent: the table as Arrow IPC (~8x
        cheaper than pickling the table, and journaled as it is); its required values checked
        here, where a failure can still be answered."""
        if self.table is not None:
            check_required(self.table)
            self.encoded, self.table = EncodedEvents.of(self.table), None
        return self

    def decode(self) -> None:
        if self.encoded is not None:
            self.table, self.encoded = self.encoded.table(), None

    def has_rows(self) -> bool:
        return bool(self.rows or self.dead or (self.table is not None and self.table.num_rows)
                    or (self.encoded is not None and self.encoded.num_rows))  # fmt: skip

    def events(self) -> pa.Table | EncodedEvents | list[tuple]:
        """The rows for the writer: a table when there are many (built here, on the event
        loop, not in the writer thread: the serial part), else tuples (converted once per group)."""
        if self.encoded is not None:
            return self.encoded
        if self.table is None:
            return events_table_from_values(self.rows) if len(self.rows) >= TABLE_MIN_ROWS else self.rows
        return self.table  # `_fast` merged any rows validated one by one into it


class Ingestor:
    """Turns one HTTP request (path type, headers, body bytes) into rows and an answer;
    batches of `POOL_MIN_BYTES` or more are validated by the `pool`'s processes, if any."""

    def __init__(self, keys: KeyRing, writer: GroupCommitWriter, pool: ValidationPool | None = None):
        self.keys = keys
        self.writer = writer
        self.pool = pool
        self._reloading: asyncio.Future | None = None

    # -- auth ------------------------------------------------------------------------------

    async def authenticate(self, key: str | None) -> WriteKey:
        if not key:
            raise ApiError(401, "missing_write_key",
                           "no write key: send it as the HTTP Basic username with an empty "
                           "password, or as `writeKey` in the body")  # fmt: skip
        if self.keys.stale():
            self._schedule_reload()
        found = self.keys.lookup(key)
        if found is None and self.keys.stale(1.0):
            await self._schedule_reload()  # a key created moments ago
            found = self.keys.lookup(key)
        if found is None:
            revoked = self.keys.revoked(key)
            shown = key[:8] + "…" if len(key) > 8 else key
            if revoked is not None:
                raise ApiError(401, "invalid_write_key",
                               f"write key {shown} (id {revoked.id}) was revoked at "
                               f"{revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
            raise ApiError(401, "invalid_write_key", f"write key {shown} is not valid")
        return found

    def _schedule_reload(self) -> asyncio.Future:
        if self._reloading is None or self._reloading.done():
            loop = asyncio.get_running_loop()
            self._reloading = loop.run_in_executor(None, self.keys.reload)
        return self._reloading

    # -- the request -----------------------------------------------------------------------

    async def handle(self, kind: str, path: str, authorization: str | None,
                     content_encoding: str | None, body: bytes) -> tuple[int, bytes]:  # fmt: skip
        """Returns (status, JSON body). Never raises for bad input."""
        self.writer.incoming += 1  # the writer may wait a moment for this request's rows
        counted = True
        try:
            header_key = basic_auth_key(authorization)
            key = await self.authenticate(header_key) if header_key is not None else None
            limit = MAX_BATCH_BYTES if kind == BATCH else MAX_MESSAGE_BYTES
            if len(body) > limit:
                raise too_large(kind, len(body))
            data = decode_body(body, content_encoding, limit)
            if len(data) > limit:
                raise too_large(kind, None)
            if key is not None and self.pool is not None and kind == BATCH and len(data) >= POOL_MIN_BYTES:
                outcome = await self.pool.validate(kind, path, data, key.source, utcnow())
            else:
                fast = decode_fast(kind, data)
                payload = parse_json(data) if fast is None else None
                if key is None:
                    body_key = payload.get("writeKey") if fast is None else fast.write_key
                    key = await self.authenticate(body_key if isinstance(body_key, str) else None)
                outcome = _validated(fast, payload, data, kind, path, key.source, utcnow())
            if _guard is not None and _guard.count(self.keys.store):
                outcome.decode()
                dicts = [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in outcome.rows]
                kept, _ = _guard.screen_rows(self.keys.store, dicts)
                outcome.rows = [tuple(row.values()) for row in kept]
                if outcome.table is not None:
                    outcome.table, _ = _guard.screen_table(self.keys.store, outcome.table)
                outcome.dead = _guard.screen_raw(self.keys.store, outcome.dead, _guard.dead_letter_pairs)
            if outcome.has_rows():
                rows = outcome.events()
                self.writer.incoming -= 1
                counted = False
                try:
                    await _within(self.writer.write(rows, outcome.dead), COMMIT_TIMEOUT)
                except WriterClosed as exc:
                    raise ApiError(503, "unavailable", str(exc)) from None
                except TimeoutError:
                    raise ApiError(503, "commit_timeout",
                                   f"the store did not confirm the commit within {COMMIT_TIMEOUT:.0f} s; "
                                   "retry (messages are deduplicated by messageId)") from None  # fmt: skip
                except OSError as exc:  # the journal (disk full...): nothing of it was kept
                    raise ApiError(503, "unavailable", f"{exc.strerror or exc}; retry "
                                   "(messages are deduplicated by messageId)") from None  # fmt: skip
                except Exception as exc:
                    log.exception("commit failed")
                    raise ApiError(
                        500, "commit_failed", f"the events could not be stored: {exc}; retry"
                    ) from None
            if kind != BATCH and outcome.rejected:
                r = outcome.rejected[0]
                raise ApiError(400, "invalid_message", f"{r['field']}: {r['reason']}",
                               field=r["field"], reason=r["reason"])  # fmt: skip
            if outcome.rejected:
                return 200, orjson.dumps({"success": True, "rejected": outcome.rejected})
            return 200, OK_BODY
        except ApiError as exc:
            return exc.status, exc.body()
        finally:
            if counted:
                self.writer.incoming -= 1

def validate(kind: str, path: str, data: bytes, source: str, received_at: datetime) -> Outcome:
    """A request's rows, dead letters and rejections (its write key checked already); raises
    `ApiError` for a body that is not a request at all."""
    fast = decode_fast(kind, data)
    return _validated(fast, parse_json(data) if fast is None else None, data, kind, path, source,
                      received_at)  # fmt: skip


def validate_many(requests: list[tuple[str, str, bytes, str, datetime]]) -> list[Outcome | ApiError]:
    """`validate` of several requests (kind, path, body, source, receivedAt): each one's
    `Outcome`, or the `ApiError` it raises. The usual batches are validated together
    (`batch_tables`: their columns built once)."""
    results: list[Outcome | ApiError | None] = [None] * len(requests)
    together = []  # (position, envelope, body, source, received_at, sent_at)
    for position, (kind, path, data, source, received_at) in enumerate(requests):
        try:
            fast = decode_fast(kind, data) if kind == BATCH else None
            if fast is not None:
                sent_at = _sent_at(fast)
                if sent_at is not False:
                    together.append((position, fast, data, source, received_at, sent_at))
                    continue
            results[position] = validate(kind, path, data, source, received_at)
        except ApiError as exc:
            results[position] = exc
    tables = batch_tables([Request(fast.batch, source, received_at, sent_at)
                           for _, fast, _, source, received_at, sent_at in together])  # fmt: skip
    for (position, fast, data, source, received_at, sent_at), (table, left) in zip(together, tables, strict=True):
        results[position] = _with_left(fast, data, table, left, source, received_at, sent_at)
    return results


def _sent_at(fast) -> datetime | None | bool:
    """A batch's sentAt, or False when it does not parse (the full path names the error)."""
    try:
        return parse_time(fast.sent_at, "sentAt")
    except MessageError:
        return False


def _validated(fast, payload: dict | None, data: bytes, kind: str, path: str, source: str,
               received_at: datetime) -> Outcome:  # fmt: skip
    if fast is not None:
        return _fast(fast, data, kind, path, source, received_at)
    if kind == BATCH:
        return _batch(payload, source, received_at, len(data))
    return _single(payload, kind, path, source, received_at)


def warm_up_request() -> tuple:
    """A small batch request (`validate`'s arguments) to pay imports and first calls with."""
    messages = [{"type": "track", "event": "warm-up", "userId": "u", "messageId": f"w{i}",
                 "timestamp": "2024-01-01T00:00:00Z", "properties": {"revenue": 1}} for i in range(2)]  # fmt: skip
    return BATCH, "/v1/batch", orjson.dumps({"batch": messages}), "warm-up", utcnow()


def _fast(fast, data: bytes, kind: str, path: str, source: str,
          received_at: datetime) -> Outcome:  # fmt: skip
    """Messages through `fast_values`; each one it cannot decide alone goes the full way."""
    if kind != BATCH:
        if fast.type is None or fast.type == kind:
            try:
                row = fast_values(data, source=source, received_at=received_at,
                                  default_type=kind, message=fast)  # fmt: skip
                return Outcome([row], [], [])
            except _NOT_FAST:
                pass
        return _single(parse_json(data), kind, path, source, received_at)
    sent_at = _sent_at(fast)
    if sent_at is False:
        return _batch(parse_json(data), source, received_at, len(data))  # names the error
    # The usual messages at once, in columns; the others one by one, each error named.
    table, left = batch_table(fast.batch, source=source, received_at=received_at,
                              batch_sent_at=sent_at)  # fmt: skip
    return _with_left(fast, data, table, left, source, received_at, sent_at)


def _with_left(fast, data: bytes, table: pa.Table, left: list[int], source: str,
               received_at: datetime, sent_at: datetime | None) -> Outcome:  # fmt: skip
    """A batch's outcome from its rows validated in columns and the messages `left` to
    validate one by one."""
    outcome = Outcome([], [], [], table if table.num_rows else None)
    rows = outcome.rows
    placed = []  # the batch index of each row in `rows`
    for index in left:
        raw = fast.batch[index]
        if len(raw) <= MAX_MESSAGE_BYTES:
            try:
                rows.append(fast_values(raw, source=source, received_at=received_at,
                                        batch_sent_at=sent_at))  # fmt: skip
                placed.append(index)
                continue
            except _NOT_FAST:
                pass
        before = len(rows)
        _message(orjson.loads(bytes(raw)), index, source, received_at, sent_at, None,
                      len(data) > MAX_MESSAGE_BYTES, outcome)  # fmt: skip
        placed += [index] * (len(rows) - before)
    if rows and outcome.table is not None:  # one table in batch order (the first of a repeated id wins)
        skipped = set(left)
        at = [i for i in range(len(fast.batch)) if i not in skipped] + placed
        merged = pa.concat_tables([table, events_table_from_values(rows)])
        outcome.table = merged.take(sorted(range(len(at)), key=at.__getitem__))
        outcome.rows = []
    return outcome

def _single(
    message: dict, kind: str, path: str, source: str, received_at: datetime
) -> Outcome:
    message.pop("writeKey", None)
    stated = message.get("type")
    if stated is not None and (not isinstance(stated, str) or stated.lower() != kind):
        return _reject(message, 0, source, "type",
                            f"{stated!r} does not match the endpoint {path} (type {kind!r})")  # fmt: skip
    if stated is None:
        message["type"] = kind
    try:
        row = normalize_values(
            message, source=source, received_at=received_at, correct_skew=True
        )
    except MessageError as exc:
        return _reject(message, 0, source, exc.field, exc.reason)
    return Outcome([row], [], [])

def _batch(payload: dict, source: str, received_at: datetime, size: int) -> Outcome:
    messages = payload.get("batch")
    if not isinstance(messages, list):
        if messages is None:
            raise ApiError(
                400, "invalid_batch", "`batch` is required: a JSON array of messages"
            )
        raise ApiError(
            400,
            "invalid_batch",
            f"`batch` must be a JSON array of messages, got {_json_type(messages)}",
        )
    try:
        sent_at = parse_time(payload.get("sentAt"), "sentAt")
    except MessageError as exc:
        raise ApiError(
            400, "invalid_batch", f"sentAt: {exc.reason}", field="sentAt", reason=exc.reason
        ) from None
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        raise ApiError(
            400, "invalid_batch", f"`context` must be a JSON object, got {_json_type(context)}"
        )
    check_size = size > MAX_MESSAGE_BYTES  # no message can be over the limit otherwise
    outcome = Outcome([], [], [])
    for index, message in enumerate(messages):
        _message(message, index, source, received_at, sent_at, context, check_size, outcome)
    return outcome

def _message(message, index: int, source: str, received_at: datetime,
             sent_at: datetime | None, context: dict | None, check_size: bool,
             outcome: Outcome) -> None:  # fmt: skip
    """One message of a batch: a row in `outcome`, or a rejection naming the field."""
    if not isinstance(message, dict):
        _reject(message, index, source, "batch[]",
                     f"each message must be a JSON object, got {_json_type(message)}", outcome)  # fmt: skip
        return
    if check_size:
        length = len(orjson.dumps(message))
        if length > MAX_MESSAGE_BYTES:
            _reject(message, index, source, "(message)",
                         f"the message is {length:,} bytes; the limit is {_kb(MAX_MESSAGE_BYTES)} per message",
                         outcome)  # fmt: skip
            return
    if context and isinstance(message.get("context", {}), dict):
        message["context"] = {**context, **(message.get("context") or {})}
    try:
        outcome.rows.append(normalize_values(message, source=source, received_at=received_at,
                                             correct_skew=True, batch_sent_at=sent_at))  # fmt: skip
    except MessageError as exc:
        _reject(message, index, source, exc.field, exc.reason, outcome)

def _reject(message, index: int, source: str, field: str, reason: str,
            outcome: Outcome | None = None) -> Outcome:  # fmt: skip
    outcome = outcome or Outcome([], [], [])
    message_id = message.get("messageId") if isinstance(message, dict) else None
    item = {"index": index, "field": field, "reason": reason}
    if isinstance(message_id, str):
        item["messageId"] = message_id
    outcome.rejected.append(item)
    if isinstance(message, dict):
        message.pop("writeKey", None)
    outcome.dead.append(
        DeadLetter(
            source=source, reason=reason, field=field, raw=orjson.dumps(message).decode()
        )
    )
    return outcome


async def _within(future: asyncio.Future, seconds: float):
    """`asyncio.wait_for` for a plain future at a fifth of its cost per request: a timer that
    cancels the future (TimeoutError), instead of a waiter, a callback and a timer."""
    expired = []

    def expire() -> None:
        if not future.done():
            expired.append(True)
            future.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await future
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


def too_large(kind: str, size: int | None) -> ApiError:
    """413 naming the limit; `size` None means "over the limit once decompressed"."""
    if kind == BATCH:
        what = "over the limit once decompressed" if size is None else f"{size:,} bytes"
        return ApiError(413, "batch_too_large",
                        f"the request body is {what}; the limit is {_kb(MAX_BATCH_BYTES)} per batch request")  # fmt: skip
    what = "over the limit once decompressed" if size is None else f"{size:,} bytes"
    return ApiError(413, "message_too_large",
                    f"the message is {what}; the limit is {_kb(MAX_MESSAGE_BYTES)} per message")  # fmt: skip
