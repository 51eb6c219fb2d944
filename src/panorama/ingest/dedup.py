"""Which `message_id`s the log already holds — without an index in the store.

A message id makes ingestion idempotent: an SDK retrying a request, a file loaded twice, a
batch re-sent after a timeout all store each event once. Up to store version 1 that was the
`events` table's primary key, an ART index in DuckDB. It cost 10-30 µs of CPU per inserted
event, growing with the log (random keys), and DuckDB rewrites the whole index at every
checkpoint: 0.34 s at 4M events even when 100 rows changed, ~85 ns per event held — seconds
per checkpoint at tens of millions of events, with commits waiting behind it, and a file
several times the size of the data. A log only appends, so this module does the job instead:

- `SeenIds` holds DuckDB's 64-bit `hash(message_id)` of every event in sorted NumPy arrays
  (8 bytes per event), read with one scan of the log when the store is first written to;
- an incoming event whose hash is not there is new — the common case, decided in a few µs
  per batch;
- an event whose hash is there is checked exactly: against the ids this process committed
  lately (an SDK's retry), else against the log itself (one scan of `message_id`: a file
  loaded again, or a 64-bit hash collision, ~n/2^64 per new event).

Nothing is lost to a collision (the exact check decides) and nothing is stored twice by
one process (every insert of the log goes through here, under one lock).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import numpy as np

from panorama.store import one

# Ids committed lately, kept exactly (two generations of this many): an SDK retries within
# seconds or minutes, so its duplicates are found without scanning the log.
RECENT_IDS = 100_000


class SeenIds:
    """The hashes of the log's message ids (see the module's docstring). Thread-safe."""

    def __init__(self, hashes: np.ndarray | None = None):
        self.lock = threading.RLock()
        # Sorted levels, each at least 4x the next (merged as they fill): a lookup is one
        # binary search per level, an insert amortised O(log n).
        self._levels: list[np.ndarray] = []
        if hashes is not None and len(hashes):
            self._levels.append(np.unique(np.asarray(hashes, dtype=np.uint64)))
        self._recent: set[str] = set()
        self._older: set[str] = set()
        self.scans = 0  # exact checks that had to read the log

    @classmethod
    def load(cls, cur: duckdb.DuckDBPyConnection) -> SeenIds:
        hashes = cur.execute("SELECT hash(message_id) AS h FROM events").fetchnumpy()["h"]
        return cls(np.asarray(hashes, dtype=np.uint64))

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: True if an id with that hash may be in the log (False: certainly not)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        # Searched in ascending order, consecutive searches walk the same parts of a level
        # instead of missing the cache at each step: at 8M ids, 15,000 hashes take 5.8 ms
        # instead of 18.5 (a load's dedup check, ~0.8 µs per event, growing with the log).
        order = np.argsort(hashes)
        needles = hashes[order]
        hit = np.zeros(len(needles), dtype=bool)
        with self.lock:
            for level in self._levels:
                at = np.searchsorted(level, needles)
                inside = at < len(level)
                hit[inside] |= level[at[inside]] == needles[inside]
        found = np.empty(len(hashes), dtype=bool)
        found[order] = hit
        return found

    def add(self, hashes: np.ndarray) -> None:
        """Hashes of ids being inserted. Safe before the commit: an id whose transaction rolls
        back only costs an exact check later, never a lost event."""
        if not len(hashes):
            return
        with self.lock:
            self._levels.append(np.unique(np.asarray(hashes, dtype=np.uint64)))
            while len(self._levels) > 1 and len(self._levels[-1]) * 4 >= len(self._levels[-2]):
                last = self._levels.pop()
                merged = np.concatenate([self._levels.pop(), last])
                merged.sort(kind="stable")  # two sorted runs: a merge
                self._levels.append(merged)

    def committed(self, ids: Iterable[str]) -> None:
        """Ids whose insert is committed (only then: `existing` trusts this list without reading the log)."""
        with self.lock:
            self._recent.update(ids)
            if len(self._recent) >= RECENT_IDS:
                self._older, self._recent = self._recent, set()

    def forget(self) -> None:
        """After events were deleted (privacy): the exact list must not vouch for them."""
        with self.lock:
            self._recent.clear()
            self._older.clear()

    def existing(self, cur: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> set[str]:
        """Which of `ids` (those `maybe` flagged) are in the log — exactly, as `cur` sees it."""
        with self.lock:
            known = {i for i in ids if i in self._recent or i in self._older}
        unknown = [i for i in dict.fromkeys(ids) if i not in known]
        if unknown:
            self.scans += 1
            rows = cur.execute(
                "SELECT DISTINCT message_id FROM events WHERE message_id IN (SELECT unnest($ids))",
                {"ids": unknown},
            ).fetchall()
            known.update(row[0] for row in rows)
        return known


# One `SeenIds` per database file open in this process, keyed by its path and checked
# against the file's identity (a file deleted and created again is another log).
_open: dict[str, tuple[tuple[int, int], SeenIds]] = {}
_loading = threading.Lock()


def _database_path(cur: duckdb.DuckDBPyConnection) -> str:
    row = one(cur.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ))
    return row[0] if row and row[0] else ""


def seen_ids(where) -> SeenIds:
    """The `SeenIds` of the log that `where` (a Store or a cursor of one) writes to, read
    from the log on first use and kept while the store is open."""
    from panorama.store import Store

    cur = where.cursor() if isinstance(where, Store) else where
    path = str(Path(where.path).resolve()) if isinstance(where, Store) else _database_path(cur)
    if not path or path == ":memory:":
        return SeenIds.load(cur)
    try:
        stat = os.stat(path)
        identity = (stat.st_dev, stat.st_ino)
    except OSError:
        identity = (0, 0)
    with _loading:
        held = _open.get(path)
        if held is None or held[0] != identity:
            held = _open[path] = (identity, SeenIds.load(cur))
        return held[1]


def forget_store(path) -> None:
    """The store at `path` was closed: its ids are read again when it is next written to."""
    with _loading:
        _open.pop(str(Path(path).resolve()), None)


def insert_new_events(
    cur: duckdb.DuckDBPyConnection, select_sql: str, columns: str, *,
    order_by: str = "rowid", params: dict | list | None = None,
) -> int:  # fmt: skip
    """Insert the rows of `select_sql` (event columns) whose message_id is not in the log,
    the first of each id among them (by `order_by`, default as they come); returns how many.
    Runs inside the caller's transaction."""
    seen = seen_ids(cur)
    stage = f"CREATE OR REPLACE TEMP TABLE _ev_stage AS SELECT *, hash(message_id) AS _h FROM ({select_sql})"
    with seen.lock:
        if params is None:
            cur.execute(stage)
        else:
            cur.execute(stage, params)
        try:
            hashes = cur.execute("SELECT _h FROM _ev_stage").fetchnumpy()["_h"]
            if not len(hashes):
                return 0
            keep: list[str] = []
            flagged = seen.maybe(hashes)
            if flagged.any():
                candidates = [row[0] for row in cur.execute(
                    "SELECT DISTINCT message_id FROM _ev_stage WHERE _h IN (SELECT unnest($h))",
                    {"h": np.unique(hashes[flagged]).tolist()}).fetchall()]  # fmt: skip
                duplicates = seen.existing(cur, candidates)
                if duplicates:
                    cur.execute("CREATE OR REPLACE TEMP TABLE _ev_dups AS SELECT unnest($ids) AS message_id",
                                {"ids": sorted(duplicates)})  # fmt: skip
                    keep.append("message_id NOT IN (SELECT message_id FROM _ev_dups)")
            where = f"WHERE {' AND '.join(keep)}" if keep else ""
            # ids repeated within the rows: the first one wins (equal ids have equal hashes)
            repeated = len(np.unique(hashes)) < len(hashes)
            first = (
                f"QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY {order_by}) = 1"
                if repeated
                else ""
            )
            loaded = one(cur.execute(
                f"INSERT INTO events ({columns}) SELECT {columns} FROM _ev_stage {where} {first}"
            ))[0]
            seen.add(hashes)
            return int(loaded)
        finally:
            cur.execute("DROP TABLE IF EXISTS _ev_stage")
            cur.execute("DROP TABLE IF EXISTS _ev_dups")
