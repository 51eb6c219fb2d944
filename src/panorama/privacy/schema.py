"""Tables of the privacy module (migrations 900-999).

- `privacy_state`: key/value bookkeeping; `tombstone_salt` is the project's random salt for
  tombstone hashes.
- `privacy_tombstones`: one row per identifier of a deleted person, as
  SHA-256(salt, type, canonical value) — never the value. Ingestion (files, the HTTP API, and
  so real time) drops any row carrying one, so a deletion is not undone by the next import.
- `privacy_requests`: data subject requests served (export, delete): when, by whom, how many
  rows — never whose (the request id is random).
- `consent_changes`: every change of a person's consent per purpose, with its time and where
  it came from (an event, a trait, a source column, an admin). Keyed by a hashed identifier, so
  it survives re-resolution and never stores the value in clear; `profile_id` is the profile it
  resolved to when recorded (informational).
- `consent_suppressions`: identifiers (hashed like tombstones) that must never be contacted on
  a purpose ('*' = any), whatever their consent says: bounces, complaints, legal hold-outs.
"""

from __future__ import annotations

from panorama.store.schema import Migration

_V900 = """
CREATE TABLE privacy_state (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE privacy_tombstones (
    hash VARCHAR PRIMARY KEY,
    type VARCHAR NOT NULL,
    request_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE privacy_requests (
    request_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    requested_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    actor VARCHAR,
    counts JSON
);

CREATE SEQUENCE consent_change_ids START 1;
CREATE TABLE consent_changes (
    id BIGINT PRIMARY KEY DEFAULT nextval('consent_change_ids'),
    subject_hash VARCHAR NOT NULL,
    profile_id VARCHAR,
    purpose VARCHAR NOT NULL,
    granted BOOLEAN NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    source VARCHAR NOT NULL,
    via VARCHAR NOT NULL,
    reference VARCHAR,
    recorded_at TIMESTAMP NOT NULL
);

CREATE TABLE consent_suppressions (
    hash VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    reason VARCHAR,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (hash, purpose)
);
"""

# What `consent_changes` was last made consistent with (see consent.start): the server skips
# the rebuild from the whole log at start-up when nothing changed since.
_V901 = """
CREATE TABLE consent_sync_state (fingerprint VARCHAR NOT NULL, synced_at TIMESTAMP NOT NULL);
"""

MIGRATIONS: list[Migration] = [
    Migration(900, "privacy: tombstones, requests, consent changes, suppressions", _V900),
    Migration(901, "privacy: the state consent_changes was last synced with", _V901),
]
