"""The store's core schema (the log), as migrations.

A migration is applied once and recorded in `schema_migrations`. Never edit a released
migration: append a new one. Each module owns its tables and declares them in its own
`schema.py` with a `MIGRATIONS` list, listed in `MODULE_SCHEMAS` below; versions are
global, so each module takes its own hundred (core 1-99, identity 100-199, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

# Event properties promoted to typed columns (DuckDB reads JSON 30-70x slower than columns).
# name -> SQL type. Numeric ones must parse as numbers or the row is dead-lettered.
PROMOTED_PROPERTIES: dict[str, str] = {
    "revenue": "DOUBLE",
    "value": "DOUBLE",
    "price": "DOUBLE",
    "quantity": "DOUBLE",
    "discount": "DOUBLE",
    "currency": "VARCHAR",
    "product_id": "VARCHAR",
    "category": "VARCHAR",
    "channel": "VARCHAR",
    "campaign_id": "VARCHAR",
    "offer_id": "VARCHAR",
    "order_id": "VARCHAR",
}
NUMERIC_PROPERTIES = frozenset(k for k, v in PROMOTED_PROPERTIES.items() if v == "DOUBLE")

_promoted_columns = ",\n    ".join(f"{name} {sql_type}" for name, sql_type in PROMOTED_PROPERTIES.items())

IDENTIFIER_LIST = "STRUCT(type VARCHAR, value VARCHAR)[]"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_CORE_V1 = f"""
-- Source records (CRM contacts, loyalty members, ...): append-only, one row per distinct
-- version of a record. The current version of a record is its latest by ingested_at.
CREATE TABLE records (
    source VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    row_hash VARCHAR NOT NULL,
    ts TIMESTAMP,
    ingested_at TIMESTAMP NOT NULL,
    identifiers {IDENTIFIER_LIST},
    attributes JSON,
    data JSON,
    file VARCHAR,
    line BIGINT,
    PRIMARY KEY (source, record_id, row_hash)
);

-- Events, Segment-shaped. Files of events get message_id = '<source>:<key>'.
CREATE TABLE events (
    message_id VARCHAR PRIMARY KEY,
    type VARCHAR NOT NULL,
    event VARCHAR,
    source VARCHAR NOT NULL,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    group_id VARCHAR,
    previous_id VARCHAR,
    timestamp TIMESTAMP NOT NULL,
    original_timestamp TIMESTAMP,
    sent_at TIMESTAMP,
    received_at TIMESTAMP NOT NULL,
    identifiers {IDENTIFIER_LIST},
    traits JSON,
    properties JSON,
    context JSON,
    {_promoted_columns},
    file VARCHAR,
    line BIGINT
);

-- Rejected input with the reason; inspectable and replayable.
CREATE SEQUENCE dead_letter_ids START 1;
CREATE TABLE dead_letters (
    id BIGINT PRIMARY KEY DEFAULT nextval('dead_letter_ids'),
    source VARCHAR,
    file VARCHAR,
    line BIGINT,
    field VARCHAR,
    reason VARCHAR NOT NULL,
    raw VARCHAR,
    received_at TIMESTAMP NOT NULL,
    replayed_at TIMESTAMP
);

-- One row per ingestion of a source (file or HTTP), for status pages and the CLI.
CREATE SEQUENCE ingest_run_ids START 1;
CREATE TABLE ingest_runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('ingest_run_ids'),
    source VARCHAR NOT NULL,
    file VARCHAR,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    rows_read BIGINT DEFAULT 0,
    rows_loaded BIGINT DEFAULT 0,
    rows_duplicate BIGINT DEFAULT 0,
    rows_rejected BIGINT DEFAULT 0
);
"""

# Version 2: `events` without the primary key on message_id. The ART index cost 10-30 µs of
# CPU per inserted event and DuckDB rewrote all of it at every checkpoint (seconds at tens of
# millions of events); ingest/dedup.py keeps message ids unique instead. Same columns, same
# order; the rows are copied over.
_EVENTS_COLUMNS_V1 = _CORE_V1.split("CREATE TABLE events (", 1)[1].split("\n);", 1)[0]
_CORE_V2 = f"""
CREATE TABLE events_v2 ({_EVENTS_COLUMNS_V1.replace("message_id VARCHAR PRIMARY KEY", "message_id VARCHAR NOT NULL", 1)}
);
INSERT INTO events_v2 SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "core log: records, events, dead letters", _CORE_V1),
    Migration(2, "events: message ids kept unique by ingest/dedup.py, not by an index", _CORE_V2),
    # The last ingestion-journal record loaded into the log (ingest/journal.py), written in
    # the same transaction as its rows.
    Migration(3, "ingestion journal position",
              "CREATE TABLE ingest_journal (loaded_seq BIGINT NOT NULL); INSERT INTO ingest_journal VALUES (0);"),  # fmt: skip
]


# Modules whose `schema.MIGRATIONS` are applied by `store.open_store`, with their version range.
MODULE_SCHEMAS: dict[str, range] = {
    "panorama.store.schema": range(1, 100),
    "panorama.identity.schema": range(100, 200),
    "panorama.ingest.keys_schema": range(200, 300),
    "panorama.traits.schema": range(300, 400),
    "panorama.segments.schema": range(400, 500),
    "panorama.activate.schema": range(500, 600),
    "panorama.predict.schema": range(600, 700),
    "panorama.auth.schema": range(700, 800),
    "panorama.journeys.schema": range(800, 900),
    "panorama.privacy.schema": range(900, 1000),
}


# The current version of every source record (the latest ingested row per source + record_id).
CURRENT_RECORDS = """
    SELECT * FROM records
    QUALIFY row_number() OVER (PARTITION BY source, record_id ORDER BY ingested_at DESC, line DESC) = 1
"""
