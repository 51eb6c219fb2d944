"""Small hand-made logs for the traits tests: events with a user id per person, written to a
real DuckDB store with the log's own append function."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from panorama.config import ProjectConfig, parse_config
from panorama.ingest.log import append_events, events_table
from panorama.store import Store, open_store
from panorama.store.schema import PROMOTED_PROPERTIES

_ids = itertools.count(1)


def ev(user: str | None, event: str | None, ts: str, *, type: str = "track", source: str = "api",
       message_id: str | None = None, anonymous_id: str | None = None, **props) -> dict:  # fmt: skip
    """One event row of the log; promoted properties go to their typed columns too."""
    row = {
        "message_id": message_id or f"m{next(_ids):06d}",
        "type": type,
        "event": event,
        "source": source,
        "user_id": user,
        "anonymous_id": anonymous_id,
        "timestamp": dt.datetime.fromisoformat(ts),
        "received_at": dt.datetime.fromisoformat(ts),
        "identifiers": [{"type": "user_id", "value": user}] if user else [],
        "properties": orjson.dumps(props).decode(),
    }
    for name in PROMOTED_PROPERTIES:
        if name in props:
            row[name] = props[name]
    return row


def write(store: Store, rows: list[dict]):
    table = events_table(rows)
    append_events(store.cursor(), table)
    return table


def config(**extra) -> ProjectConfig:
    return parse_config({"name": "t", **extra})


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "store.duckdb")
    try:
        yield s
    finally:
        s.close()


def traits_of(store: Store, table: str = "profile_traits") -> dict[str, dict]:
    rel = store.execute(f"SELECT * FROM {table} ORDER BY profile_id")
    names = [d[0] for d in rel.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in rel.fetchall()}


# -- the demo data set, with profiles from its ground truth (independent of identity resolution)

DEMO_CUSTOMERS = 300
DEMO_SEED = 11


@dataclass
class Demo:
    root: Path
    store: Store
    project: object
    inputs: object

    def person_traits(self) -> dict[str, dict]:
        return traits_of(self.store)


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    """A small demo project (generated, ingested); profiles are the truth's person ids."""
    from panorama.config import load_project
    from panorama.demo.generate import generate
    from panorama.ingest.files import ingest_source
    from panorama.store.schema import CURRENT_RECORDS
    from panorama.traits.batch import Inputs

    root = tmp_path_factory.mktemp("traits-demo") / "demo"
    generate(root, customers=DEMO_CUSTOMERS, seed=DEMO_SEED)
    project = load_project(root)
    store = open_store(project.store_path)
    for name in project.config.sources:
        ingest_source(store, project, name)
    ids = str(root / "truth" / "identities.csv").replace("'", "''")
    store.execute(f"CREATE TABLE truth_ids AS SELECT * FROM read_csv('{ids}', all_varchar = true)")
    rid = ("CASE WHEN starts_with(e.message_id, e.source || ':') "
           "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END")  # fmt: skip
    inputs = Inputs(
        f"SELECT t.person_id AS profile_id, e.* FROM events e "
        f"JOIN truth_ids t ON t.source = e.source AND t.record_id = {rid}",
        f"SELECT t.person_id AS profile_id, r.source, r.record_id, r.ts, r.ingested_at, r.attributes "
        f"FROM ({CURRENT_RECORDS}) r JOIN truth_ids t ON t.source = r.source AND t.record_id = r.record_id",
    )
    try:
        yield Demo(root, store, project, inputs)
    finally:
        store.close()
