"""Reading one unified profile: what the CLI (`panorama profile show`), the REST API and the
web UI display.

`find_profile(store, key)` accepts a profile id (also an old id that was merged into another:
it resolves to the survivor), `type:value` (`email:Ann@X.com`, `phone:07700 900123` — the
value is normalised like the graph's), or a bare identifier value.

`get_profile(store, key)` returns the profile with its identifiers, golden attributes (with
each winning value's source and time), source records, an events summary, the merge history
and the links that hold it together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from panorama.config import IdentityConfig, ProjectConfig
from panorama.store import Store, one


@dataclass
class ProfileRef:
    profile_id: str
    requested: str
    via: str  # id | merged_id | identifier | loner
    status: str = "active"


@dataclass
class Profile:
    profile_id: str
    status: str
    created_at: datetime | None
    updated_at: datetime | None
    looked_up_as: str | None
    merged_ids: list[str] = field(default_factory=list)
    identifiers: list[dict[str, Any]] = field(default_factory=list)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unified(store: Store) -> bool:
    from panorama.identity.export import unified

    return unified(store)


def find_profile(store: Store, key: str, config: IdentityConfig | None = None) -> ProfileRef | None:
    """Resolve a profile id, an old (merged) id, or an identifier to the active profile."""
    key = key.strip()
    if not key or not _unified(store):
        return None
    if key.startswith("p_"):
        row = one(store.execute(
            "SELECT profile_id, status, merged_into FROM identity_profiles WHERE profile_id = ?", [key]
        ))
        if row is not None:
            pid, status, merged_into = row
            seen = {pid}
            while status == "merged" and merged_into and merged_into not in seen:
                seen.add(merged_into)
                nxt = one(store.execute(
                    "SELECT profile_id, status, merged_into FROM identity_profiles WHERE profile_id = ?",
                    [merged_into],
                ))
                if nxt is None:
                    break
                pid, status, merged_into = nxt
            return ProfileRef(pid, key, "id" if pid == key else "merged_id", status)
        if _loner_exists(store, key):
            return ProfileRef(key, key, "loner", "active")
        return None
    from panorama.identity.normalize import Normalizer

    normalizer = Normalizer(config or IdentityConfig())
    candidates: list[tuple[str | None, str]] = []
    kind, sep, value = key.partition(":")
    if sep and kind and " " not in kind and "@" not in kind:
        normalised, _ = normalizer.identifier(kind, value)
        candidates.append((kind, normalised or value.strip()))
    else:
        for t in ("email", "phone"):
            normalised, status = normalizer.identifier(t, key)
            if normalised is not None:
                candidates.append((t, normalised))
        candidates.append((None, key))
    for identifier_type, value in candidates:
        sql = "SELECT profile_id, status FROM identity_nodes WHERE value = ?"
        params: list[Any] = [value]
        if identifier_type is not None:
            sql += " AND type = ?"
            params.append(identifier_type)
        rows = store.execute(sql + " AND profile_id IS NOT NULL ORDER BY type LIMIT 1", params).fetchall()
        if rows:
            return ProfileRef(rows[0][0], key, "identifier", "active")
    return None


def _loner_exists(store: Store, pid: str) -> bool:
    from panorama.identity.export import membership_sql

    sql = membership_sql(store)
    return bool(store.scalar(f"SELECT count(*) FROM ({sql}) WHERE profile_id = ?", [pid]))


def _sigs_sql() -> str:
    """The signatures of a profile's rows (parameter: profile id)."""
    return """
        SELECT s.sig FROM identity_sigs s JOIN identity_nodes n ON n.node = s.anchor WHERE n.profile_id = ?
    """


def get_profile(store: Store, key: str, project_config: ProjectConfig | None = None,
                recent_events: int = 20) -> Profile | None:  # fmt: skip
    """The profile `key` names (see module doc), or None."""
    from panorama.identity.export import events_with_profile_sql, records_with_profile_sql
    from panorama.profiles.golden import golden_long_sql

    identity_config = project_config.identity if project_config is not None else None
    ref = find_profile(store, key, identity_config)
    if ref is None:
        return None
    pid = ref.profile_id
    row = one(store.execute(
        "SELECT status, created_at, updated_at FROM identity_profiles WHERE profile_id = ?", [pid]
    ))
    status, created, updated = row if row else ("active", None, None)
    profile = Profile(pid, status, created, updated, key if ref.via != "id" else None)
    profile.merged_ids = [r[0] for r in store.execute(
        "SELECT profile_id FROM identity_profiles WHERE merged_into = ? ORDER BY profile_id", [pid]
    ).fetchall()]  # fmt: skip
    profile.identifiers = [
        {"type": t, "value": v, "shared": s == "shared", "first_seen": fs}
        for t, v, s, fs in store.execute(
            """
            SELECT type, value, status, first_seen FROM identity_nodes WHERE profile_id = ?
            UNION
            SELECT n.type, n.value, n.status, n.first_seen
            FROM identity_sig_nodes sn JOIN identity_nodes n ON n.node = sn.node
            WHERE n.status = 'shared' AND sn.sig IN (""" + _sigs_sql() + """)
            ORDER BY 1, 2
            """,
            [pid, pid],
        ).fetchall()
    ]
    filt = "profile_id = " + "'" + pid.replace("'", "''") + "'"
    for attribute, value, source, record_id, ts, rule in store.execute(
        f"SELECT attribute, value, source, record_id, ts, rule FROM ({golden_long_sql(store, project_config, filt)}) "
        "ORDER BY attribute"
    ).fetchall():
        profile.attributes[attribute] = {"value": value, "source": source, "record_id": record_id, "at": ts,
                                         "rule": rule}  # fmt: skip
    profile.records = [
        {"source": s, "record_id": r, "ts": ts,
         "identifiers": [{"type": i["type"], "value": i["value"]} for i in (ids or [])],
         "attributes": orjson.loads(a) if a else {}}
        for s, r, ts, ids, a in store.execute(
            f"SELECT source, record_id, ts, identifiers, CAST(attributes AS VARCHAR) FROM ({records_with_profile_sql()}) "
            "WHERE profile_id = ? ORDER BY ts, source, record_id",
            [pid],
        ).fetchall()
    ]  # fmt: skip
    events = f"SELECT * FROM ({events_with_profile_sql()}) WHERE profile_id = ?"
    summary = store.execute(
        f"SELECT source, type, coalesce(event, '') AS event, count(*), min(timestamp), max(timestamp) FROM ({events}) "
        "GROUP BY ALL ORDER BY 4 DESC",
        [pid],
    ).fetchall()
    profile.events = {
        "count": sum(r[3] for r in summary),
        "first_seen": min((r[4] for r in summary), default=None),
        "last_seen": max((r[5] for r in summary), default=None),
        "by_event": [{"source": s, "type": t, "event": e, "count": n} for s, t, e, n, _, _ in summary],
        "recent": [
            {"timestamp": ts, "source": s, "type": t, "event": e, "message_id": m}
            for ts, s, t, e, m in store.execute(
                f"SELECT timestamp, source, type, event, message_id FROM ({events}) ORDER BY timestamp DESC LIMIT ?",
                [pid, recent_events],
            ).fetchall()
        ],
    }
    ids = [pid, *profile.merged_ids]
    marks = ", ".join("?" for _ in ids)
    profile.history = [
        {"id": i, "at": at, "action": a, "profile_id": p, "other_id": o, "rule": r,
         "evidence": orjson.loads(ev) if ev else None, "origin": og, "undone_by": u}
        for i, at, a, p, o, r, ev, og, u in store.execute(
            "SELECT id, occurred_at, action, profile_id, other_id, rule, CAST(evidence AS VARCHAR), origin, undone_by "
            f"FROM identity_journal WHERE profile_id IN ({marks}) OR other_id IN ({marks}) ORDER BY id",
            ids + ids,
        ).fetchall()
    ]  # fmt: skip
    profile.links = [
        {"from": {"type": at_, "value": av}, "to": {"type": bt, "value": bv}, "rule": r, "accepted": acc,
         "refused_by": rb, "probability": pr, "record": {"source": s, "record_id": rid},
         "other_record": {"source": os_, "record_id": orid} if os_ else None, "at": ts}
        for at_, av, bt, bv, r, acc, rb, pr, s, rid, os_, orid, ts in store.execute(
            "SELECT a_type, a_value, b_type, b_value, rule, accepted, refused_by, probability, source, record_id, "
            "other_source, other_record_id, ts FROM identity_edges WHERE profile_id = ? "
            "ORDER BY accepted DESC, rule, ts NULLS LAST LIMIT 200",
            [pid],
        ).fetchall()
    ]  # fmt: skip
    return profile
