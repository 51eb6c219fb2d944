"""The durable outbox: actions are enqueued in the same transaction as what caused them, and
delivered by one worker per destination (`panorama.activate.worker`) with retries.

Enqueueing is idempotent (`idempotency_key` is unique): replaying the same cause stores the
action once. After the enqueueing transaction commits, the destination's worker is woken up,
so delivery starts within milliseconds; workers also poll, so nothing depends on the wake-up.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pyarrow as pa

from panorama.config import RetryConfig
from panorama.ingest.log import utcnow
from panorama.segments.engine import after_commit
from panorama.store import Store

STATUSES = ("pending", "delivered", "dead", "suppressed")


@dataclass(frozen=True)
class Action:
    destination: str
    trigger: str | None
    kind: str  # segment.entered | segment.exited | event | event.not_followed | manual
    profile_id: str | None
    payload: dict
    key: str  # the idempotency key


def dumps(value) -> bytes:
    return orjson.dumps(value, default=str,
                        option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)  # fmt: skip


# -- wake-ups ------------------------------------------------------------------------------------

_wakers: dict[int, Callable[[Iterable[str]], None]] = {}
_wakers_lock = threading.Lock()


def set_waker(store: Store, waker: Callable[[Iterable[str]], None] | None) -> None:
    """The running server's delivery workers register here to be woken on new actions."""
    with _wakers_lock:
        if waker is None:
            _wakers.pop(id(store), None)
        else:
            _wakers[id(store)] = waker


def _wake(store: Store, destinations: set[str]) -> None:
    waker = _wakers.get(id(store))
    if waker is not None:
        waker(destinations)


def enqueue(cur, store: Store, actions: list[Action], now: datetime | None = None) -> int:
    """Store actions (inside the caller's transaction); returns how many were new."""
    if not actions:
        return 0
    now = now or utcnow()
    for action in actions:
        action.payload.setdefault("idempotency_key", action.key)
    table = pa.table({
        "idempotency_key": [a.key for a in actions],
        "destination": [a.destination for a in actions],
        "trigger": pa.array([a.trigger for a in actions], pa.string()),
        "kind": [a.kind for a in actions],
        "profile_id": pa.array([a.profile_id for a in actions], pa.string()),
        "payload": [dumps(a.payload).decode() for a in actions],
    })  # fmt: skip
    name = f"_outbox_new_{threading.get_ident()}"
    cur.register(name, table)
    try:
        inserted = cur.execute(
            f"""INSERT OR IGNORE INTO activation_outbox (idempotency_key, destination, trigger, kind,
                    profile_id, payload, status, attempts, created_at, next_attempt_at)
                SELECT idempotency_key, destination, trigger, kind, profile_id, payload, 'pending', 0, ?, ?
                FROM (SELECT DISTINCT ON (idempotency_key) * FROM {name})
                RETURNING id""",
            [now, now],
        ).fetchall()  # fmt: skip
    finally:
        cur.unregister(name)
    destinations = {a.destination for a in actions}
    after_commit(lambda: _wake(store, destinations))
    return len(inserted)


# -- delivery bookkeeping (the workers) ----------------------------------------------------------


@dataclass
class Pending:
    id: int
    idempotency_key: str
    destination: str
    trigger: str | None
    kind: str
    profile_id: str | None
    payload: dict
    attempts: int


def due(store: Store, destination: str, limit: int = 100, now: datetime | None = None) -> list[Pending]:
    rows = store.execute(
        """SELECT id, idempotency_key, destination, trigger, kind, profile_id, payload, attempts
           FROM activation_outbox WHERE destination = ? AND status = 'pending' AND next_attempt_at <= ?
           ORDER BY next_attempt_at, id LIMIT ?""",
        [destination, now or utcnow(), limit],
    ).fetchall()  # fmt: skip
    return [Pending(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7]) for r in rows]


def next_due(store: Store, destination: str) -> datetime | None:
    return store.scalar(
        "SELECT min(next_attempt_at) FROM activation_outbox WHERE destination = ? AND status = 'pending'",
        [destination],
    )


def backoff(retry: RetryConfig, attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: initial x 2^(attempts-1), capped, +-20% jitter."""
    delay = min(retry.max, retry.initial * (2 ** max(attempts - 1, 0)))
    return delay * random.uniform(0.8, 1.2)


@dataclass
class Attempt:
    """The outcome of one delivery attempt."""

    item: Pending
    ok: bool
    permanent: bool = False
    status: int | None = None
    error: str | None = None
    suppressed: bool = False


def _next_state(a: Attempt, retry: RetryConfig | None, now: datetime) -> tuple[str, int, datetime]:
    attempts = a.item.attempts + (0 if a.suppressed else 1)
    if a.suppressed:
        return "suppressed", attempts, now
    if a.ok:
        return "delivered", attempts, now
    if a.permanent or retry is None or attempts >= retry.max_attempts:
        return "dead", attempts, now
    return "pending", attempts, now + timedelta(seconds=backoff(retry, attempts))


def record_many(store: Store, results: list[Attempt], retry: RetryConfig | None,
                now: datetime | None = None) -> list[str]:  # fmt: skip
    """Write the outcomes of a round of attempts in one statement; returns the new statuses."""
    if not results:
        return []
    now = now or utcnow()
    states = [_next_state(a, retry, now) for a in results]
    table = pa.table({
        "id": pa.array([a.item.id for a in results], pa.int64()),
        "status": [s[0] for s in states],
        "attempts": pa.array([s[1] for s in states], pa.int32()),
        "next_at": pa.array([s[2] for s in states], pa.timestamp("us")),
        "ok": [a.ok for a in results],
        "error": pa.array([a.error[:1000] if a.error else None for a in results], pa.string()),
        "code": pa.array([a.status for a in results], pa.int32()),
    })  # fmt: skip
    cur = store.cursor()
    name = f"_outbox_results_{threading.get_ident()}"
    cur.register(name, table)
    try:
        cur.execute(
            f"""UPDATE activation_outbox o SET status = r.status, attempts = r.attempts, last_attempt_at = ?,
                    next_attempt_at = r.next_at, delivered_at = CASE WHEN r.ok THEN ? ELSE o.delivered_at END,
                    last_error = r.error, last_status = r.code
                FROM {name} r WHERE o.id = r.id""",
            [now, now],
        )  # fmt: skip
    finally:
        cur.unregister(name)
    return [s[0] for s in states]


def record(store: Store, item: Pending, *, ok: bool, permanent: bool = False, status: int | None = None,
           error: str | None = None, retry: RetryConfig | None = None, suppressed: bool = False,
           now: datetime | None = None) -> str:  # fmt: skip
    """Write one attempt's outcome; returns the row's new status."""
    return record_many(store, [Attempt(item, ok, permanent, status, error, suppressed)], retry, now)[0]


# -- reading and operating -----------------------------------------------------------------------


def summary(store: Store) -> list[dict]:
    """Per destination: counts by status, oldest pending, next attempt."""
    result = store.execute("""
        SELECT destination,
               count(*) FILTER (status = 'pending') AS pending,
               count(*) FILTER (status = 'delivered') AS delivered,
               count(*) FILTER (status = 'dead') AS dead,
               count(*) FILTER (status = 'suppressed') AS suppressed,
               min(created_at) FILTER (status = 'pending') AS oldest_pending,
               min(next_attempt_at) FILTER (status = 'pending') AS next_attempt_at,
               max(delivered_at) AS last_delivered_at
        FROM activation_outbox GROUP BY destination ORDER BY destination
    """)  # fmt: skip
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def deliveries(store: Store, status: str | None = None, destination: str | None = None,
               limit: int = 50) -> list[dict]:  # fmt: skip
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if destination:
        where.append("destination = ?")
        params.append(destination)
    sql = ("SELECT id, destination, trigger, kind, profile_id, status, attempts, created_at, "
           "last_attempt_at, next_attempt_at, delivered_at, last_status, last_error, idempotency_key "
           "FROM activation_outbox")  # fmt: skip
    if where:
        sql += " WHERE " + " AND ".join(where)
    result = store.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def retry(store: Store, ids: list[int] | None = None, destination: str | None = None,
          statuses: tuple[str, ...] = ("dead",)) -> int:  # fmt: skip
    """Put dead (or given) deliveries back to pending, due now, with a fresh attempt budget."""
    where = [f"status IN ({', '.join('?' for _ in statuses)})"]
    params: list = list(statuses)
    if ids:
        where.append(f"id IN ({', '.join('?' for _ in ids)})")
        params += ids
    if destination:
        where.append("destination = ?")
        params.append(destination)
    now = utcnow()
    rows = store.execute(
        f"UPDATE activation_outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
        f"WHERE {' AND '.join(where)} RETURNING destination",
        [now, *params],
    ).fetchall()  # fmt: skip
    _wake(store, {r[0] for r in rows})
    return len(rows)
