"""The log as Parquet: events and source records, partitioned by date and source.

    <log_path>/events/date=2024-05-01/source=web/<batch>-0.parquet
    <log_path>/records/date=2024-05-01/source=crm/<batch>-0.parquet

`date` is the day the log received the rows (`received_at` of events, `ingested_at` of
records), not the event time: an append touches one partition per source and day, so a
backfill of three years of history is a few files, not one per day of history, and an
incremental run reads only the partitions since its watermark. Event time stays a column
(`timestamp`) that readers filter on.

The Parquet log is append-only and at-least-once: a batch may be written twice (a retried
sync, the real-time writer and a sync overlapping), so readers keep one row per `message_id`
(events) and per `(source, record_id, row_hash)` (records) — `spark_views` does. JSON columns
are stored as text. Writers:

* `sync(store, path)`: what the store's log has received since the Parquet log's watermark
  (files ingested with `panorama ingest` keep their validation and dead letters);
* `MicroBatchWriter`: the real-time API's committed batches, flushed every N events or T seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from panorama.store import Store

PARTITIONS = ("date", "source")
_JSON = {"events": ("traits", "properties", "context"), "records": ("attributes", "data")}
_TIME = {"events": "received_at", "records": "ingested_at"}
_WATERMARK = {"events": "received_at", "records": "ingested_at"}


def _prepare(kind: str, table: pa.Table) -> pa.Table:
    """JSON columns as text, plus the `date` partition column (the day the log received the rows)."""
    for name in _JSON[kind]:
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
    date = pc.strftime(table.column(_TIME[kind]), format="%Y-%m-%d")
    return table.append_column("date", date)


def write(path: str | Path, kind: str, table: pa.Table) -> int:
    """Append rows of the store's `events` or `records` columns to the Parquet log.

    Files are written under `_staging/` (readers skip names starting with `_`) and renamed
    into their partitions, so a reader never sees a half-written file."""
    if table.num_rows == 0:
        return 0
    table = _prepare(kind, table)
    batch = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    staging = Path(path) / "_staging" / batch
    ds.write_dataset(
        table, staging / kind, format="parquet",
        partitioning=list(PARTITIONS), partitioning_flavor="hive",
        basename_template=f"{batch}-{{i}}.parquet", max_partitions=1_000_000,
    )  # fmt: skip
    for file in sorted((staging / kind).rglob("*.parquet")):
        target = Path(path) / kind / file.relative_to(staging / kind)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    shutil.rmtree(staging, ignore_errors=True)
    return table.num_rows


def watermark(store: Store, path: str | Path, kind: str):
    """The latest receive (events) or ingestion (records) time in the Parquet log, or None."""
    root = Path(path) / kind
    if not root.exists() or not any(root.rglob("*.parquet")):
        return None
    glob = str(root / "**" / "*.parquet").replace("'", "''")
    return store.scalar(
        f"SELECT max({_WATERMARK[kind]}) FROM read_parquet('{glob}', hive_partitioning = true)"
    )


def sync(store: Store, path: str | Path, batch_rows: int = 500_000) -> dict[str, int]:
    """Copy the store's events and records newer than the Parquet log's watermark; returns rows per kind."""
    out = {}
    for kind in ("events", "records"):
        mark = watermark(store, path, kind)
        where = f" WHERE {_WATERMARK[kind]} > ?" if mark is not None else ""
        reader = store.cursor().execute(
            f"SELECT * FROM {kind}{where}", [mark] if mark is not None else None
        )
        batches = reader.to_arrow_reader(batch_rows)
        out[kind] = sum(write(path, kind, pa.Table.from_batches([b])) for b in batches)
    return out


class MicroBatchWriter:
    """Buffers committed event batches and appends them to the Parquet log every `rows` events
    or `seconds` (a background thread), and at `close()`. A failed flush keeps the buffer and
    is retried at the next one; the DuckDB log stays the durable copy until then."""

    def __init__(self, path: str | Path, rows: int = 10_000, seconds: float = 5.0):
        self.path = path
        self.rows = rows
        self.seconds = seconds
        self.written = 0
        self.errors = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="parquet-log", daemon=True)
        self._thread.start()

    def append(self, events: pa.Table) -> None:
        with self._lock:
            self._buffer.append(events)
            self._buffered += events.num_rows
            full = self._buffered >= self.rows
        if full:
            # on failure the rows stay in the buffer for the next flush; never fails the caller
            with contextlib.suppress(Exception):
                self.flush()

    def flush(self) -> int:
        with self._lock:
            if not self._buffer:
                return 0
            batch = pa.concat_tables(self._buffer, promote_options="permissive")
            try:
                n = write(self.path, "events", batch)
            except Exception:
                self.errors += 1
                raise
            self._buffer, self._buffered = [], 0
            self.written += n
            return n

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            with contextlib.suppress(Exception):  # kept in the buffer; retried next time
                self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


def _empty(spark, store: Store, kind: str):
    """An empty DataFrame with the log's columns (a kind that has no rows yet)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    table = _prepare(kind, store.execute(f"SELECT * FROM {kind} LIMIT 0").to_arrow_table())
    return spark.createDataFrame([], from_arrow_schema(table.schema))


def spark_views(spark, path: str | Path, store: Store | None = None) -> dict[str, int]:
    """Register `events` and `records` (deduplicated) over the Parquet log; returns row counts.
    A kind with no file yet is an empty view with the store's columns (`store` needed)."""
    counts = {}
    keys = {"events": "message_id", "records": "source, record_id, row_hash"}
    for kind in ("events", "records"):
        if store is not None and not any(Path(f"{path}/{kind}").rglob("*.parquet")):
            df = _empty(spark, store, kind)
        else:
            df = spark.read.option("basePath", f"{path}/{kind}").parquet(f"{path}/{kind}")
        df.createOrReplaceTempView(f"_log_{kind}")
        cols = ", ".join(f"`{c}`" for c in df.columns if c != "date")
        dedup = spark.sql(f"""
            SELECT {cols} FROM (
                SELECT *, row_number() OVER (PARTITION BY {keys[kind]} ORDER BY {_WATERMARK[kind]}) AS _n
                FROM _log_{kind}) WHERE _n = 1
        """).cache()
        dedup.createOrReplaceTempView(kind)
        counts[kind] = dedup.count()
    return counts
