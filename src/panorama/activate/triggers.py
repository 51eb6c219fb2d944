"""Triggers: what turns an entry, an exit, an event or a missing event into outbox actions.

- `segment` + `on: enter|exit`: called by the segments engine with each committed change
  (`on_segment_changes`, in the same transaction as the membership change).
- `event` (+ optional `where`): every matching event committed through the API
  (`on_events`, the stage-500 hook), one action per event and destination.
- `event` + `not_followed_by` + `within`: a matching event starts (or pushes back) a durable
  timer for its profile, due `within` after the event was received; a follow-up event with a
  timestamp at or after the start cancels it. When a timer comes due the log is checked once
  more for a follow-up, then the action is enqueued (`fire_due_timers`).

Every action carries the profile's row (attributes, traits, predictions) as of enqueueing,
and an idempotency key derived from its cause, so re-processing a cause stores it once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pyarrow as pa

from panorama.activate.outbox import Action, enqueue
from panorama.config import ProjectConfig, TriggerConfig
from panorama.ingest.log import utcnow
from panorama.segments.catalog import Catalog
from panorama.segments.engine import Change, SegmentSet, profile_rows, transaction
from panorama.segments.language import SegmentError, compile_event_filter
from panorama.store import Store

log = logging.getLogger("panorama.activate")

EVENT_FIELDS = ("message_id", "type", "event", "source", "user_id", "anonymous_id", "timestamp",
                "received_at", "properties", "context")  # fmt: skip


def _names(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _in_list(values: list[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


@dataclass(frozen=True)
class CompiledTrigger:
    name: str
    config: TriggerConfig
    events: tuple[str, ...]
    follow: tuple[str, ...]
    where_sql: str | None

    @property
    def timed(self) -> bool:
        return bool(self.follow)

    def match_sql(self) -> str:
        parts = []
        if self.events and "*" not in self.events:
            parts.append(f"event IN {_in_list(list(self.events))}")
        if self.where_sql:
            parts.append(f"({self.where_sql})")
        return " AND ".join(parts) or "true"


def compile_triggers(config: ProjectConfig) -> tuple[dict[str, CompiledTrigger], dict[str, str]]:
    """Event triggers compiled (their `where`); errors by trigger name."""
    out, errors = {}, {}
    for name, trig in config.triggers.items():
        if trig.event is None:
            continue
        try:
            where_sql = compile_event_filter(trig.where) if trig.where else None
        except SegmentError as exc:
            errors[name] = f"triggers.{name}.where: {exc}"
            continue
        out[name] = CompiledTrigger(name, trig, tuple(_names(trig.event)), tuple(_names(trig.not_followed_by)),
                                    where_sql)  # fmt: skip
    return out, errors


def _event_dict(row: dict) -> dict:
    event = {k: row.get(k) for k in EVENT_FIELDS if k in row}
    for key in ("properties", "context"):
        value = event.get(key)
        if isinstance(value, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                event[key] = orjson.loads(value)
    return event


def _actions(trigger: str, config: TriggerConfig, kind: str, profile_id: str, basis: str,
             payload: dict) -> list[Action]:  # fmt: skip
    return [
        Action(dest, trigger, kind, profile_id, {**payload, "destination": dest},
               f"{trigger}:{basis}:{dest}")  # fmt: skip
        for dest in config.destinations
    ]


def _payload(trigger: str, kind: str, profile_id: str, profile: dict | None, at: datetime, **extra) -> dict:
    return {"trigger": trigger, "type": kind, "profile_id": profile_id, "profile": profile or {},
            "occurred_at": at, **extra}  # fmt: skip


# -- segment entries and exits -------------------------------------------------------------------


def on_segment_changes(cur, store: Store, segset: SegmentSet, changes: list[Change]) -> int:
    """Enqueue the actions of segment triggers for committed entries/exits (caller's transaction)."""
    config = segset.config
    wanted = [(name, t) for name, t in config.triggers.items() if t.segment is not None]
    if not wanted:
        return 0
    matched = [(name, t, c) for c in changes for name, t in wanted
               if t.segment == c.segment and t.on == c.kind]  # fmt: skip
    if not matched:
        return 0
    profiles = profile_rows(store, segset.catalog, {c.profile_id for _, _, c in matched}, cur=cur)
    actions = []
    for name, trig, change in matched:
        kind = "segment.entered" if change.kind == "enter" else "segment.exited"
        basis = f"{change.segment}:{change.kind}:{change.profile_id}:{change.at.isoformat()}"
        payload = _payload(name, kind, change.profile_id, profiles.get(change.profile_id), change.at,
                           segment=change.segment)  # fmt: skip
        actions += _actions(name, trig, kind, change.profile_id, basis, payload)
    return enqueue(cur, store, actions)


# -- events --------------------------------------------------------------------------------------


def _matching(cur, catalog: Catalog, batch: str, trigger: CompiledTrigger) -> list[dict]:
    sql = f"SELECT * FROM ({catalog.event_profiles_sql(batch)}) WHERE {trigger.match_sql()}"
    result = cur.execute(sql)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def on_events(cur, store: Store, catalog: Catalog, triggers: dict[str, CompiledTrigger],
              events: pa.Table, now: datetime | None = None) -> dict[str, int]:  # fmt: skip
    """Event triggers and timers for a committed batch of events (caller's transaction)."""
    now = now or utcnow()
    counts = {"actions": 0, "timers": 0, "cancelled": 0}
    if not triggers or not events.num_rows:
        return counts
    batch = f"_act_events_{threading.get_ident()}"
    cur.register(batch, events)
    try:
        actions: list[Action] = []
        matches: list[tuple[CompiledTrigger, dict]] = []
        for trigger in triggers.values():
            rows = _matching(cur, catalog, batch, trigger)
            if trigger.timed:
                counts["timers"] += _start_timers(cur, trigger, rows, now)
            else:
                matches += [(trigger, row) for row in rows]
        if matches:
            profiles = profile_rows(store, catalog, {r["profile_id"] for _, r in matches}, cur=cur)
            for trigger, row in matches:
                payload = _payload(trigger.name, "event", row["profile_id"], profiles.get(row["profile_id"]),
                                   row["received_at"] or now, event=_event_dict(row))  # fmt: skip
                actions += _actions(trigger.name, trigger.config, "event", row["profile_id"],
                                    row["message_id"], payload)  # fmt: skip
        for trigger in triggers.values():
            if trigger.timed:
                counts["cancelled"] += _cancel_timers(cur, catalog, batch, trigger, now)
        counts["actions"] = enqueue(cur, store, actions, now)
    finally:
        cur.unregister(batch)
    return counts


def _start_timers(cur, trigger: CompiledTrigger, rows: list[dict], now: datetime) -> int:
    """One pending timer per profile: insert, or move it to the latest start event."""
    latest: dict[str, dict] = {}
    for row in rows:
        current = latest.get(row["profile_id"])
        if current is None or (row["timestamp"], row["message_id"]) > (current["timestamp"], current["message_id"]):
            latest[row["profile_id"]] = row
    if not latest:
        return 0
    within = timedelta(seconds=trigger.config.within or 0)
    table = pa.table({
        "profile_id": list(latest),
        "message_id": [r["message_id"] for r in latest.values()],
        "started_at": pa.array([r["timestamp"] for r in latest.values()], pa.timestamp("us")),
        "due_at": pa.array([(r["received_at"] or now) + within for r in latest.values()], pa.timestamp("us")),
    })  # fmt: skip
    name = f"_timer_starts_{threading.get_ident()}"
    cur.register(name, table)
    try:
        cur.execute(
            f"""UPDATE activation_timers t SET message_id = s.message_id, started_at = s.started_at,
                       due_at = greatest(t.due_at, s.due_at)
                FROM {name} s
                WHERE t.trigger = ? AND t.status = 'pending' AND t.profile_id = s.profile_id
                  AND s.started_at >= t.started_at""",
            [trigger.name],
        )  # fmt: skip
        inserted = cur.execute(
            f"""INSERT INTO activation_timers (trigger, profile_id, message_id, started_at, due_at, status, created_at)
                SELECT ?, s.profile_id, s.message_id, s.started_at, s.due_at, 'pending', ? FROM {name} s
                WHERE NOT EXISTS (SELECT 1 FROM activation_timers t WHERE t.trigger = ?
                                  AND ((t.status = 'pending' AND t.profile_id = s.profile_id)
                                       OR t.message_id = s.message_id))  -- replayed after a restart
                RETURNING 1""",
            [trigger.name, now, trigger.name],
        ).fetchall()  # fmt: skip
    finally:
        cur.unregister(name)
    return len(inserted)


def _cancel_timers(cur, catalog: Catalog, batch: str, trigger: CompiledTrigger, now: datetime) -> int:
    follow = f"event IN {_in_list(list(trigger.follow))}"
    rows = cur.execute(
        f"""UPDATE activation_timers t SET status = 'cancelled', resolved_at = ?
            FROM (SELECT profile_id, max(timestamp) AS ts FROM ({catalog.event_profiles_sql(batch)})
                  WHERE {follow} GROUP BY profile_id) f
            WHERE t.trigger = ? AND t.status = 'pending' AND t.profile_id = f.profile_id
              AND t.started_at <= f.ts
            RETURNING 1""",
        [now, trigger.name],
    ).fetchall()  # fmt: skip
    return len(rows)


def next_timer_due(store: Store) -> datetime | None:
    return store.scalar("SELECT min(due_at) FROM activation_timers WHERE status = 'pending'")


def fire_due_timers(store: Store, catalog: Catalog, triggers: dict[str, CompiledTrigger],
                    now: datetime | None = None) -> dict[str, int]:  # fmt: skip
    """Timers whose delay has passed: a follow-up in the log cancels; otherwise the action is
    enqueued and the timer marked fired (one transaction; the caller holds the activation lock)."""
    now = now or utcnow()
    cur = store.cursor()
    counts = {"fired": 0, "cancelled": 0}
    with transaction(cur):
        due = cur.execute(
            "SELECT trigger, profile_id, message_id, started_at FROM activation_timers "
            "WHERE status = 'pending' AND due_at <= ? ORDER BY due_at",
            [now],
        ).fetchall()  # fmt: skip
        if not due:
            return counts
        actions: list[Action] = []
        for trigger_name in sorted({d[0] for d in due}):
            rows = [d for d in due if d[0] == trigger_name]
            trigger = triggers.get(trigger_name)
            if trigger is None:  # the trigger left the config
                cur.execute("UPDATE activation_timers SET status = 'cancelled', resolved_at = ? "
                            "WHERE trigger = ? AND status = 'pending' AND due_at <= ?",
                            [now, trigger_name, now])  # fmt: skip
                continue
            table = pa.table({
                "profile_id": [r[1] for r in rows], "message_id": [r[2] for r in rows],
                "started_at": pa.array([r[3] for r in rows], pa.timestamp("us")),
            })  # fmt: skip
            name = f"_timers_due_{threading.get_ident()}"
            cur.register(name, table)
            try:
                followed = {r[0] for r in cur.execute(
                    f"""SELECT DISTINCT d.profile_id FROM {name} d
                        JOIN ({catalog.events_sql}) e ON e.profile_id = d.profile_id
                        WHERE e.event IN {_in_list(list(trigger.follow))} AND e.timestamp >= d.started_at"""
                ).fetchall()}  # fmt: skip
                starts = cur.execute(
                    f"SELECT e.* FROM events e WHERE e.message_id IN (SELECT message_id FROM {name})"
                )
                names = [d[0] for d in starts.description]
                start_rows = {r[0]: dict(zip(names, r, strict=True)) for r in starts.fetchall()}
            finally:
                cur.unregister(name)
            firing = [r for r in rows if r[1] not in followed]
            profiles = profile_rows(store, catalog, {r[1] for r in firing}, cur=cur)
            for _, profile_id, message_id, _started in firing:
                event = _event_dict(start_rows.get(message_id, {"message_id": message_id}))
                payload = _payload(trigger_name, "event.not_followed", profile_id, profiles.get(profile_id), now,
                                   event=event, not_followed_by=list(trigger.follow),
                                   within_seconds=trigger.config.within)  # fmt: skip
                actions += _actions(trigger_name, trigger.config, "event.not_followed", profile_id,
                                    f"timer:{message_id}", payload)  # fmt: skip
            for status, group in (("fired", firing), ("cancelled", [r for r in rows if r[1] in followed])):
                if not group:
                    continue
                cur.execute(
                    f"""UPDATE activation_timers SET status = ?, resolved_at = ?
                        WHERE trigger = ? AND status = 'pending' AND due_at <= ?
                          AND profile_id IN ({', '.join('?' for _ in group)})""",
                    [status, now, trigger_name, now, *[r[1] for r in group]],
                )  # fmt: skip
                counts[status] += len(group)
        enqueue(cur, store, actions, now)
    return counts


def pending_timers(store: Store, limit: int = 50) -> list[dict]:
    result = store.execute(
        "SELECT trigger, profile_id, message_id, started_at, due_at FROM activation_timers "
        "WHERE status = 'pending' ORDER BY due_at LIMIT ?", [limit])  # fmt: skip
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]
