"""A small demo project shared by the journeys and experiments tests: generated, its web source
ingested into a real DuckDB store; profiles are the truth's person ids (independent of identity
resolution, which has its own tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from panorama.store import Store, open_store

DEMO_CUSTOMERS = 1000
DEMO_SEED = 7
RECORD_ID = ("CASE WHEN starts_with(e.message_id, e.source || ':') "
             "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END")  # fmt: skip


@dataclass
class Demo:
    root: Path
    store: Store
    project: object
    events_sql: str


def make_demo(root: Path, sources: tuple[str, ...] = ("web",), customers: int = DEMO_CUSTOMERS,
              seed: int = DEMO_SEED) -> Demo:
    from panorama.config import load_project
    from panorama.demo.generate import generate
    from panorama.ingest.files import ingest_source

    generate(root, customers=customers, seed=seed)
    project = load_project(root)
    store = open_store(project.store_path)
    for name in sources:
        ingest_source(store, project, name)
    ids = str(root / "truth" / "identities.csv").replace("'", "''")
    store.execute(f"CREATE TABLE truth_ids AS SELECT * FROM read_csv('{ids}', all_varchar = true)")
    events_sql = (f"SELECT t.person_id AS profile_id, e.* FROM events e "
                  f"JOIN truth_ids t ON t.source = e.source AND t.record_id = {RECORD_ID}")
    return Demo(root, store, project, events_sql)
