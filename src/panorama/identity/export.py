"""SQL for the profile contracts once `panorama unify` has run: `export identities`,
`export identifiers`, `export profiles`, and every event with its profile.

A record's or event's profile is a function of its identifier list: the list's signature
(`hash`) leads to its anchor identifier, whose profile it is (`identity_sigs`,
`identity_nodes`). So rows that arrive after a `unify` with identifiers already seen are
resolved at once; a row whose signature is new (until the next `unify`, or the real-time
hook for events through the API) stands alone, as does a row without a linkable identifier.

Each function returns None before the first `unify` (callers then fall back to one
provisional profile per record or event).
"""

from __future__ import annotations

import duckdb

from panorama.identity.graph import EMPTY_IDS, EVENT_IDS, EVENT_RECORD_ID, members_sql
from panorama.identity.ids import loner_profile_id_sql
from panorama.store import Store
from panorama.store.schema import CURRENT_RECORDS


def unified(store: Store) -> bool:
    """Has `unify` run on this store, with this DuckDB version (signatures are its hashes)?"""
    if not store.table_exists("identity_state"):
        return False
    rows = dict(store.execute(
        "SELECT key, value FROM identity_state WHERE key IN ('last_unify', 'duckdb_version')"
    ).fetchall())  # fmt: skip
    return "last_unify" in rows and rows.get("duckdb_version") == duckdb.__version__


def _profile(source: str, record_id: str) -> str:
    return f"CASE WHEN n.profile_id IS NOT NULL THEN n.profile_id ELSE {loner_profile_id_sql(source, record_id)} END"


def events_with_profile_sql() -> str:
    """Every event column plus `profile_id` (and `_record_id`, the id exports use)."""
    return f"""
        SELECT {_profile("x.source", "x._record_id")} AS profile_id, x.* EXCLUDE (_sig)
        FROM (SELECT e.*, hash({EVENT_IDS}) AS _sig, {EVENT_RECORD_ID} AS _record_id FROM events e) x
        LEFT JOIN identity_sigs s ON s.sig = x._sig
        LEFT JOIN identity_nodes n ON n.node = s.anchor
    """


def profile_events_sql(store: Store) -> str | None:
    """Every event column plus `profile_id`: the contract later stages read events through."""
    if not unified(store):
        return None
    return f"SELECT * EXCLUDE (_record_id) FROM ({events_with_profile_sql()})"


def records_with_profile_sql() -> str:
    return f"""
        SELECT {_profile("x.source", "x.record_id")} AS profile_id, x.* EXCLUDE (_sig)
        FROM (SELECT r.*, hash(coalesce(r.identifiers, {EMPTY_IDS})) AS _sig FROM ({CURRENT_RECORDS}) r) x
        LEFT JOIN identity_sigs s ON s.sig = x._sig
        LEFT JOIN identity_nodes n ON n.node = s.anchor
    """


def membership_sql(store: Store) -> str | None:
    """(source, record_id, profile_id) for every current record and every event."""
    if not unified(store):
        return None
    return f"""
        SELECT source, record_id, profile_id FROM ({records_with_profile_sql()})
        UNION ALL
        SELECT source, _record_id AS record_id, profile_id FROM ({events_with_profile_sql()})
    """


def identifiers_sql(store: Store) -> str | None:
    """(profile_id, type, value, shared): each profile's linked identifiers, and the shared
    identifiers its records and events carry."""
    if not unified(store):
        return None
    return f"""
        SELECT profile_id, type, value, false AS shared FROM identity_nodes
        WHERE profile_id IS NOT NULL AND status = 'linked'
        UNION ALL
        SELECT DISTINCT a.profile_id, n.type, n.value, true
        FROM identity_nodes n
        JOIN identity_sig_nodes sn ON sn.node = n.node
        JOIN identity_sigs s ON s.sig = sn.sig
        JOIN identity_nodes a ON a.node = s.anchor
        WHERE n.status = 'shared' AND a.profile_id IS NOT NULL
        UNION ALL
        SELECT DISTINCT {loner_profile_id_sql("m.source", "m.record_id")}, n.type, n.value, true
        FROM (SELECT source, record_id, hash(ids) AS sig FROM ({members_sql()})) m
        JOIN identity_sigs s ON s.sig = m.sig AND s.anchor IS NULL
        JOIN identity_sig_nodes sn ON sn.sig = s.sig
        JOIN identity_nodes n ON n.node = sn.node
    """


def profiles_sql(store: Store) -> str | None:
    """One row per profile with its golden attributes."""
    if not unified(store):
        return None
    from panorama.profiles.golden import golden_sql

    return golden_sql(store)
