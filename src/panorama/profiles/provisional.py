"""Profiles before identity resolution: one profile per source record or event.

Used until `panorama unify` has built the identity graph; the profile id is a stable hash
of source and record id.
"""

from __future__ import annotations

from panorama.store import Store
from panorama.store.schema import CURRENT_RECORDS

_EVENT_RECORD_ID = (
    "CASE WHEN starts_with(message_id, source || ':') "
    "THEN substr(message_id, length(source) + 2) ELSE message_id END"
)


def _members(store: Store) -> str:
    return f"""
        SELECT source, record_id, identifiers, attributes, ts FROM ({CURRENT_RECORDS})
        UNION ALL
        SELECT source, {_EVENT_RECORD_ID} AS record_id, identifiers, traits AS attributes,
               timestamp AS ts
        FROM events
    """


def membership_sql(store: Store) -> str:
    return f"""
        SELECT source, record_id, 'p_' || substr(md5(source || chr(31) || record_id), 1, 16) AS profile_id
        FROM ({_members(store)})
    """


def identifiers_sql(store: Store) -> str:
    return f"""
        SELECT 'p_' || substr(md5(source || chr(31) || record_id), 1, 16) AS profile_id,
               i.type AS type, i.value AS value
        FROM (SELECT source, record_id, unnest(identifiers) AS i FROM ({_members(store)}))
    """


def profiles_sql(store: Store) -> str:
    return f"""
        SELECT 'p_' || substr(md5(source || chr(31) || record_id), 1, 16) AS profile_id,
               source, record_id, ts AS first_seen, CAST(attributes AS VARCHAR) AS attributes
        FROM ({_members(store)})
    """
