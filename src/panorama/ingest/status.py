"""What the log holds: per-source counts and dead letters (for the CLI, API and UI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from panorama.config import Project
from panorama.store import Store


@dataclass
class SourceStatus:
    source: str
    kind: str
    records: int
    events: int
    dead_letters: int
    last_ingest: datetime | None


def source_status(store: Store, project: Project) -> list[SourceStatus]:
    counts: dict[str, dict[str, int]] = {}
    for table, key in (("records", "records"), ("events", "events")):
        for source, n in store.execute(f"SELECT source, count(*) FROM {table} GROUP BY source").fetchall():
            counts.setdefault(source, {})[key] = n
    for source, n in store.execute(
        "SELECT source, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY source"
    ).fetchall():
        counts.setdefault(source or "(unknown)", {})["dead"] = n
    last = dict(store.execute("SELECT source, max(finished_at) FROM ingest_runs GROUP BY source").fetchall())
    names = list(project.config.sources) + sorted(set(counts) - set(project.config.sources))
    return [
        SourceStatus(
            source=name,
            kind=project.config.sources[name].kind if name in project.config.sources else "http",
            records=counts.get(name, {}).get("records", 0),
            events=counts.get(name, {}).get("events", 0),
            dead_letters=counts.get(name, {}).get("dead", 0),
            last_ingest=last.get(name),
        )
        for name in names
    ]


def dead_letters(store: Store, source: str | None = None, limit: int = 50) -> list[dict]:
    where = "WHERE replayed_at IS NULL" + (" AND source = ?" if source else "")
    cur = store.execute(
        f"SELECT id, source, file, line, field, reason, raw, received_at FROM dead_letters {where} "
        f"ORDER BY id LIMIT {int(limit)}",
        [source] if source else None,
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
