"""Profiles: the golden record per person, its identifiers and source records.

`profile_events_sql(store)` is the contract every later stage (traits, segments,
predictions, journeys) reads events through: each event of the log with the `profile_id`
it belongs to — after `panorama unify`, the resolved profile; before, one per event.
"""

from __future__ import annotations

from panorama.store import Store

_EVENT_RECORD_ID = (
    "CASE WHEN starts_with(e.message_id, e.source || ':') "
    "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END"
)


def profile_events_sql(store: Store) -> str:
    """SQL for every event column plus `profile_id`."""
    try:  # resolved identities, joined by identifier signature (no string join over the log)
        from panorama.identity.export import profile_events_sql as resolved
    except ModuleNotFoundError:
        resolved = None
    if resolved is not None and (sql := resolved(store)):
        return sql
    from panorama.profiles.export import membership_sql

    return f"""
        SELECT m.profile_id, e.*
        FROM events e
        JOIN ({membership_sql(store)}) m
          ON m.source = e.source AND m.record_id = {_EVENT_RECORD_ID}
    """
