"""Tables of the traits module (migrations 300-399).

`profile_traits` (one row per profile, typed columns) and `trait_state` (the partial
aggregates behind it) are not migrations: their columns follow the configured traits, so each
batch run (`panorama traits compute`) replaces them. `trait_runs` records every run with its
as-of time, the definitions' signature and the population parameters (RFM breakpoints,
lifecycle thresholds) that the real-time path reuses.
"""

from __future__ import annotations

from panorama.store.schema import Migration

MIGRATIONS: list[Migration] = [
    Migration(
        300,
        "traits: run history with parameters",
        """
        CREATE SEQUENCE trait_run_ids START 1;
        CREATE TABLE trait_runs (
            id BIGINT PRIMARY KEY DEFAULT nextval('trait_run_ids'),
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            engine VARCHAR NOT NULL,
            as_of TIMESTAMP NOT NULL,
            point_in_time BOOLEAN NOT NULL DEFAULT false,
            signature VARCHAR NOT NULL,
            profiles BIGINT,
            events BIGINT,
            seconds DOUBLE,
            parameters JSON
        );
        """,
    )
]
