"""Small hand-made logs for the traits tests: events with a user id per person, written to a
real DuckDB store with the log's own append function."""

from __future__ import annotations

import datetime as dt
import itertools
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
