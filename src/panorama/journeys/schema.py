"""Tables of the journeys and experiments modules (migrations 800-899).

`hypotheses`: the experiment backlog (docs/experiments.md): ICE scores, the experiment that
tests a hypothesis and its recorded outcome. Journey maps and experiment analyses are computed
from the log on demand and not stored.
"""

from __future__ import annotations

from panorama.store.schema import Migration

MIGRATIONS: list[Migration] = [
    Migration(
        800,
        "experiments: hypothesis backlog",
        """
        CREATE SEQUENCE hypothesis_ids START 1;
        CREATE TABLE hypotheses (
            id BIGINT PRIMARY KEY DEFAULT nextval('hypothesis_ids'),
            title VARCHAR NOT NULL,
            description VARCHAR,
            impact INTEGER NOT NULL,
            confidence INTEGER NOT NULL,
            ease INTEGER NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'backlog',
            experiment VARCHAR,
            outcome VARCHAR,
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL
        );
        """,
    ),
]
