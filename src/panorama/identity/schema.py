"""Identity tables (versions 100-199).

Derived and rebuilt by `panorama unify` (kept current in real time by the hook):

* identity_sigs      one row per distinct identifier list (sig = its hash): its anchor node
                     (a record's or event's profile is its anchor's; none = it stands alone)
* identity_sig_nodes sig -> the linkable nodes it carries
* identity_nodes     one row per normalised linkable identifier: its profile, its status
                     (linked | shared), its unconstrained component
* identity_observations  person attributes that guard merges (first name, date of birth) per sig
* identity_edges     why identifiers are together: rule and evidence of every link (and of
                     every refused one)
* identity_splink    scored record pairs from probabilistic matching (at or above threshold)

Kept across runs (history):

* identity_norm      cache of normalised emails and phones (keyed by project settings)
* identity_profiles  every profile id ever issued: active, or merged into another
* identity_journal   merges, splits, revivals with rule and evidence
* identity_never_merge  pairs of identifier sets an admin split apart
* identity_state     key/value bookkeeping (settings fingerprint, last run)
"""

from __future__ import annotations

from panorama.store.schema import Migration

_V100 = """
CREATE TABLE identity_norm (
    kind VARCHAR NOT NULL,
    raw VARCHAR NOT NULL,
    value VARCHAR,
    status VARCHAR NOT NULL
);

CREATE TABLE identity_state (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE identity_members (
    source VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    sig UBIGINT NOT NULL,
    ts TIMESTAMP
);

CREATE TABLE identity_sigs (
    sig UBIGINT NOT NULL,
    anchor BIGINT,
    first_ts TIMESTAMP,
    first_source VARCHAR,
    first_record_id VARCHAR,
    members BIGINT
);

CREATE TABLE identity_sig_nodes (sig UBIGINT NOT NULL, node BIGINT NOT NULL);

CREATE TABLE identity_nodes (
    node BIGINT NOT NULL,
    type VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    profile_id VARCHAR,
    component BIGINT,
    origin_profile VARCHAR,
    first_seen TIMESTAMP
);

CREATE TABLE identity_observations (
    sig UBIGINT NOT NULL,
    first_name VARCHAR,
    last_name VARCHAR,
    birth_date VARCHAR
);

CREATE TABLE identity_edges (
    profile_id VARCHAR,
    a BIGINT, b BIGINT,
    a_type VARCHAR, a_value VARCHAR,
    b_type VARCHAR, b_value VARCHAR,
    rule VARCHAR NOT NULL,
    accepted BOOLEAN NOT NULL,
    refused_by VARCHAR,
    probability DOUBLE,
    source VARCHAR, record_id VARCHAR,
    other_source VARCHAR, other_record_id VARCHAR,
    ts TIMESTAMP
);

CREATE TABLE identity_splink (
    a_sig UBIGINT, b_sig UBIGINT,
    a_source VARCHAR, a_record_id VARCHAR,
    b_source VARCHAR, b_record_id VARCHAR,
    probability DOUBLE,
    evidence JSON
);

CREATE TABLE identity_profiles (
    profile_id VARCHAR PRIMARY KEY,
    status VARCHAR NOT NULL,
    merged_into VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    first_ts TIMESTAMP,
    first_source VARCHAR,
    first_record_id VARCHAR
);

CREATE SEQUENCE identity_journal_ids START 1;
CREATE TABLE identity_journal (
    id BIGINT PRIMARY KEY DEFAULT nextval('identity_journal_ids'),
    occurred_at TIMESTAMP NOT NULL,
    action VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    other_id VARCHAR,
    rule VARCHAR,
    evidence JSON,
    origin VARCHAR NOT NULL,
    undone_by BIGINT
);

CREATE SEQUENCE identity_never_merge_ids START 1;
CREATE TABLE identity_never_merge (
    id BIGINT PRIMARY KEY DEFAULT nextval('identity_never_merge_ids'),
    created_at TIMESTAMP NOT NULL,
    a_identifiers STRUCT(type VARCHAR, value VARCHAR)[] NOT NULL,
    b_identifiers STRUCT(type VARCHAR, value VARCHAR)[] NOT NULL,
    journal_id BIGINT,
    reason VARCHAR
);
"""

MIGRATIONS: list[Migration] = [
    Migration(100, "identity graph, profiles, journal", _V100),
    # memberships are computed from each row's identifier signature instead
    Migration(101, "identity: drop identity_members", "DROP TABLE IF EXISTS identity_members;"),
]
