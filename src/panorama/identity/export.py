"""SQL for `panorama export identities|identifiers|profiles` once `panorama unify` has run.

Each function returns None before the first `unify` (the exports then fall back to one
provisional profile per record or event).
"""

from __future__ import annotations

from panorama.identity.graph import EVENT_RECORD_ID
from panorama.identity.ids import loner_profile_id_sql
from panorama.store import Store
from panorama.store.schema import CURRENT_RECORDS


def unified(store: Store) -> bool:
    if not store.table_exists("identity_state"):
        return False
    return store.scalar("SELECT count(*) FROM identity_state WHERE key = 'last_unify'") > 0


def _in_sync(store: Store) -> bool:
    """Does `identity_members` hold every event and current record? (The real-time hook keeps
    it so; files ingested after the last `unify` are not in it yet.)"""
    members = store.scalar("SELECT count(*) FROM identity_members")
    events = store.scalar("SELECT count(*) FROM events")
    records = store.scalar("SELECT count(DISTINCT (source, record_id)) FROM records")
    return members == events + records


def membership_sql(store: Store) -> str | None:
    """(source, record_id, profile_id) for every record and event."""
    if not unified(store):
        return None
    resolved = f"""
        SELECT m.source, m.record_id, coalesce(n.profile_id, {loner_profile_id_sql('m.source', 'm.record_id')}) AS profile_id
        FROM identity_members m
        JOIN identity_sigs s ON s.sig = m.sig
        LEFT JOIN identity_nodes n ON n.node = s.anchor
    """
    if _in_sync(store):
        return resolved
    # rows that came in after the last unify: a profile of their own until the next one
    return f"""
        {resolved}
        UNION ALL
        SELECT source, record_id, {loner_profile_id_sql()} AS profile_id FROM (
            SELECT source, record_id FROM ({CURRENT_RECORDS})
            UNION ALL
            SELECT source, {EVENT_RECORD_ID} AS record_id FROM events
        ) x
        WHERE NOT EXISTS (SELECT 1 FROM identity_members m WHERE m.source = x.source AND m.record_id = x.record_id)
    """


def identifiers_sql(store: Store) -> str | None:
    """(profile_id, type, value, shared): each profile's linked identifiers, and the shared
    identifiers its records carry."""
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
        SELECT DISTINCT {loner_profile_id_sql('m.source', 'm.record_id')}, n.type, n.value, true
        FROM identity_sigs s
        JOIN identity_members m ON m.sig = s.sig
        JOIN identity_sig_nodes sn ON sn.sig = s.sig
        JOIN identity_nodes n ON n.node = sn.node
        WHERE s.anchor IS NULL
    """


def profiles_sql(store: Store) -> str | None:
    """One row per profile with its golden attributes."""
    if not unified(store):
        return None
    try:
        from panorama.profiles.golden import golden_sql
    except ModuleNotFoundError:  # pragma: no cover
        golden_sql = None
    if golden_sql is not None:
        return golden_sql(store)
    return f"""
        SELECT m.profile_id, count(*) AS members FROM ({membership_sql(store)}) m GROUP BY 1
    """
