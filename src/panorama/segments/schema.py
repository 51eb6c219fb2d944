"""Tables of the segments module (migrations 400-499)."""

from __future__ import annotations

from panorama.store.schema import Migration

_V400 = """
-- One row per segment ever defined: its expression, compiled SQL and refresh bookkeeping.
CREATE TABLE segment_definitions (
    segment VARCHAR PRIMARY KEY,
    expression VARCHAR NOT NULL,
    compiled_sql VARCHAR,
    fingerprint VARCHAR,
    time_dependent BOOLEAN DEFAULT false,
    error VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    refreshed_at TIMESTAMP,
    removed_at TIMESTAMP
);

-- Membership with its history: a row per stay in a segment. Current members have
-- exited_at NULL; `entered_by`/`exited_by` say what decided it: realtime (an event),
-- clock (time passing), batch (a refresh), backfill (first evaluation of a new or changed
-- definition: no triggers fire), removed (the segment left the config).
CREATE TABLE segment_membership (
    segment VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    entered_at TIMESTAMP NOT NULL,
    exited_at TIMESTAMP,
    entered_by VARCHAR NOT NULL,
    exited_by VARCHAR
);

-- Real-time bookkeeping (e.g. the received_at of the latest event evaluated).
CREATE TABLE segment_state (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
"""

MIGRATIONS: list[Migration] = [Migration(400, "segments: definitions, membership history", _V400)]
