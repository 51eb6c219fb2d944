"""The group-commit writer: one thread owns the store's writes for a running server.

Request handlers hand over validated event rows (and dead letters) with `write()` and wait
on the returned future. The writer thread takes everything queued (up to `max_rows`, after
waiting at most `linger` seconds for more), appends it in ONE transaction, commits, and only
then resolves the futures of every request in that group: the HTTP answer 200 means the
events are in DuckDB's write-ahead log on disk. Then it runs the real-time hooks over the
rows that were new (`panorama.ingest.hooks`); a failing hook is logged and never un-does or
delays the acknowledgement (the batch path can rebuild derived state from the log).

Concurrent requests share a commit, so durability costs one commit per group, not per
request. Deduplication is by `message_id` against the log and within the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from panorama.ingest import hooks
from panorama.ingest.dedup import SeenIds, seen_ids
from panorama.ingest.log import (
    DeadLetter,
    append_dead_letters,
    events_table,
    events_table_from_values,
    utcnow,
)
from panorama.ingest.segment import EVENT_COLUMNS
from panorama.store import Store

log = logging.getLogger("panorama.writer")

_COLUMNS = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
# Every row is taken as new (the usual case); the hashes it returns are checked against the
# log's (ingest/dedup.py) before the commit, and a group with a possible duplicate is redone.
_INSERT = f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM _group_events RETURNING hash(message_id)"
# dicts or `normalize_values` tuples (one kind per submission), or a table of EVENT_SCHEMA
Rows = Sequence[dict] | Sequence[tuple] | pa.Table
_SOURCE = EVENT_COLUMNS.index("source")


class WriterClosed(RuntimeError):
    """The writer is stopped (the server is shutting down); nothing was written."""


@dataclass(frozen=True)
class CommitResult:
    """What one submission's group commit did (`new` counts the whole group)."""

    submitted: int
    dead_letters: int
    group_rows: int
    group_new: int


@dataclass
class WriterStats:
    commits: int = 0
    rows: int = 0
    new: int = 0
    dead_letters: int = 0
    failed_commits: int = 0
    hook_errors: int = 0
    last_commit_seconds: float = 0.0
    max_commit_seconds: float = 0.0
    max_group_rows: int = 0
    idle_checkpoints: int = 0


def _count_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else len(rows)


@dataclass
class _Job:
    rows: Rows  # event-log rows: dicts, or a table with `EVENT_SCHEMA` (built by the caller)
    dead: Sequence[DeadLetter]
    future: asyncio.Future | Future
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class _SourceRun:
    """Counters of one source's HTTP ingestion in this server session (`ingest_runs`)."""

    run_id: int | None = None
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    dirty: bool = field(default=False)


_STOP = object()


class GroupCommitWriter:
    def __init__(
        self,
        store: Store,
        *,
        max_rows: int = 10_000,
        linger: float = 0.0,
        busy_linger: float = 0.002,
        run_hooks: bool = True,
        stats_every: float = 1.0,
        idle_checkpoint_bytes: int | None = 16 * 1024 * 1024,
        idle_seconds: float = 0.5,
    ):
        self.store = store
        # When the queue has been empty for `idle_seconds` and the WAL holds more than
        # `idle_checkpoint_bytes`, checkpoint then, rather than inside a commit under load.
        self.idle_checkpoint_bytes = idle_checkpoint_bytes
        self.idle_seconds = idle_seconds
        self.max_rows = max_rows
        self.linger = linger
        self.busy_linger = busy_linger
        # Requests between "body received" and `write()` (kept by the HTTP layer, read here).
        self.incoming = 0
        self.run_hooks = run_hooks
        self.stats_every = stats_every
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._runs: dict[str, _SourceRun] = {}
        self._runs_saved_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GroupCommitWriter:
        self._warm_up()
        self._thread = threading.Thread(target=self._run, name="panorama-writer", daemon=True)
        self._thread.start()
        return self

    def _warm_up(self) -> None:
        """Pay one-time costs (pyarrow's first conversion takes ~2 s) before serving, not in a request."""
        from panorama.ingest.segment import normalize_message

        row = normalize_message(
            {"type": "track", "event": "warm-up", "userId": "u", "messageId": "warm-up",
             "properties": {"revenue": 1}, "context": {"ip": "127.0.0.1"}},
            source="warm-up", received_at=utcnow(),
        )  # fmt: skip
        table = events_table([row])
        seen_ids(self.store)  # read the log's ids now, not in the first request's commit
        cur = self.store.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            _group_events = table  # noqa: F841 - read by the SQL (a replacement scan)
            cur.execute(_INSERT).fetchall()
        finally:
            cur.execute("ROLLBACK")

    def stop(self, timeout: float = 30.0) -> None:
        """Commit everything already queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    # -- submitting --------------------------------------------------------------------------

    def submit(self, rows: Rows, dead: Sequence[DeadLetter] = ()) -> Future:
        """From any thread: a future resolved with a `CommitResult` once committed."""
        future: Future = Future()
        self._put(_Job(rows, dead, future))
        return future

    def write(self, rows: Rows, dead: Sequence[DeadLetter] = ()) -> asyncio.Future:
        """From the event loop: an awaitable resolved with a `CommitResult` once committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put(_Job(rows, dead, future, loop))
        return future

    def _put(self, job: _Job) -> None:
        if self._closed or self._thread is None or not self._thread.is_alive():
            raise WriterClosed("the event writer is not running (the server is shutting down)")
        self._queue.put(job)

    # -- the thread --------------------------------------------------------------------------

    def _take(self) -> tuple[list[_Job], bool]:
        """Block for the first job, then take what is queued; returns (jobs, stop)."""
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
                break
            except queue.Empty:
                self._idle_checkpoint()
        if first is _STOP:
            return [], True
        jobs = [first]
        count = _count_rows(first.rows) + len(first.dead)
        deadline = time.monotonic() + self.linger if self.linger else 0.0
        while count < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic() if deadline else 0.0
                if wait <= 0 and self.busy_linger and not deadline and (len(jobs) > 1 or self.incoming > 0):
                    # Concurrent submitters (or requests being validated right now): a commit
                    # costs one fsync and a few ms of DuckDB whatever its size, so wait a
                    # moment for the requests already on their way.
                    deadline = time.monotonic() + self.busy_linger
                    wait = self.busy_linger
                if wait <= 0:
                    break
                try:
                    job = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if job is _STOP:
                self._queue.put(_STOP)  # handle after this group
                break
            jobs.append(job)
            count += _count_rows(job.rows) + len(job.dead)
        return jobs, False

    def _idle_checkpoint(self) -> None:
        if not self.idle_checkpoint_bytes:
            return
        wal = Path(str(self.store.path) + ".wal")
        try:
            size = wal.stat().st_size
        except OSError:
            return
        if size > self.idle_checkpoint_bytes:
            started = time.perf_counter()
            try:
                self.store.cursor().execute("CHECKPOINT")
            except Exception:  # pragma: no cover - DuckDB checkpoints at the threshold anyway
                log.exception("idle checkpoint failed")
                return
            self.stats.idle_checkpoints += 1
            log.info(
                "idle checkpoint of a %.0f MB WAL in %.2f s",
                size / 2**20,
                time.perf_counter() - started,
            )

    def _run(self) -> None:
        cur = self.store.cursor()
        while True:
            jobs, stop = self._take()
            if jobs:
                try:
                    self._commit_group(cur, jobs)
                except Exception as exc:  # never leave a request waiting forever
                    log.exception("the writer failed on a group of %d submissions", len(jobs))
                    self._resolve([(job, exc) for job in jobs if not job.future.done()])
            if stop:
                break
        # Drain anything that raced with stop (put before `_closed` was seen).
        leftovers = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                leftovers.append(job)
        if leftovers:
            self._commit_group(cur, leftovers)
        try:
            self._save_runs(cur, force=True)
        except Exception:  # pragma: no cover - bookkeeping only
            log.exception("could not save ingest_runs counters")

    def _commit_group(self, cur, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            new = self._append(cur, jobs)
        except Exception as exc:
            self.stats.failed_commits += 1
            if len(jobs) == 1:
                log.exception("commit failed")
                self._resolve([(jobs[0], exc)])
                return
            # One bad submission must not fail the others: commit them one by one.
            log.warning(
                "group commit of %d submissions failed (%s); retrying one by one", len(jobs), exc
            )
            for job in jobs:
                self._commit_group(cur, [job])
            return
        elapsed = time.perf_counter() - started
        rows = sum(_count_rows(j.rows) for j in jobs)
        dead = sum(len(j.dead) for j in jobs)
        s = self.stats
        s.commits += 1
        s.rows += rows
        s.new += new.num_rows
        s.dead_letters += dead
        s.last_commit_seconds = elapsed
        s.max_commit_seconds = max(s.max_commit_seconds, elapsed)
        s.max_group_rows = max(s.max_group_rows, rows + dead)
        self._resolve(
            [(j, CommitResult(_count_rows(j.rows), len(j.dead), rows, new.num_rows)) for j in jobs]
        )
        self._count(jobs, new)
        try:
            self._save_runs(cur)
        except Exception:  # bookkeeping only; the events are committed
            log.exception("could not save ingest_runs counters")
        if self.run_hooks and new.num_rows:
            try:
                hooks.submit(self.store, new)
            except Exception:  # hooks.run has logged which hook failed; the events stay stored
                s.hook_errors += 1

    def _append(self, cur, jobs: list[_Job]) -> pa.Table:
        """Append the group in one transaction; returns the rows that were new to the log."""
        table = _first_occurrences(_group_table(jobs))
        letters = [d for job in jobs for d in job.dead]
        seen = seen_ids(self.store)
        with seen.lock:
            flagged = self._transaction(cur, table, letters, seen, check=True)
            if flagged is not None:
                # Some id may be in the log (an SDK retry, or a hash collision): rolled back;
                # find which exactly, and insert the others.
                old = seen.existing(cur, _ids_with_hashes(cur, table, flagged))
                is_old = pc.is_in(
                    table.column("message_id"), value_set=pa.array(sorted(old), pa.string())
                )
                table = table.filter(pc.invert(is_old))
                self._transaction(cur, table, letters, seen, check=False)
            if table is not None and table.num_rows:
                seen.committed(table.column("message_id").to_pylist())
        return table if table is not None else _EMPTY

    @staticmethod
    def _transaction(cur, table: pa.Table | None, letters: list[DeadLetter], seen: SeenIds,
                     check: bool):  # fmt: skip
        """Insert and commit (None); with `check`, roll back instead when `seen` flags an
        inserted id as possibly in the log already, and return the flagged hashes."""
        cur.execute("BEGIN TRANSACTION")
        try:
            if table is not None and table.num_rows:
                # DuckDB finds `_group_events` among this frame's locals (a replacement scan):
                # registering a view instead costs a catalog change per commit (~2x slower).
                _group_events = table  # noqa: F841 - read by the SQL
                hashes = next(iter(cur.execute(_INSERT).fetchnumpy().values()))
                flagged = seen.maybe(hashes) if check else None
                if flagged is not None and flagged.any():
                    cur.execute("ROLLBACK")
                    return hashes[flagged]
                seen.add(hashes)
            if letters:
                append_dead_letters(cur, letters)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return None

    def _resolve(self, outcomes: list[tuple[_Job, object]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for job, outcome in outcomes:
            if job.loop is None:
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
            else:
                by_loop.setdefault(job.loop, []).append((job.future, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)

    # -- ingest_runs bookkeeping ---------------------------------------------------------------

    def _count(self, jobs: list[_Job], new: pa.Table) -> None:
        for job in jobs:
            if isinstance(job.rows, pa.Table):
                for item in job.rows.column("source").value_counts().to_pylist():
                    self._run_for(item["values"]).read += item["counts"]
            else:
                for row in job.rows:
                    self._run_for(row[_SOURCE] if isinstance(row, tuple) else row["source"]).read += 1
            for letter in job.dead:
                run = self._run_for(letter.source or "(unknown)")
                run.read += 1
                run.rejected += 1
        if new.num_rows:
            for item in new.column("source").value_counts().to_pylist():
                self._run_for(item["values"]).loaded += item["counts"]

    def _run_for(self, source: str) -> _SourceRun:
        run = self._runs.get(source)
        if run is None:
            run = self._runs[source] = _SourceRun()
        run.dirty = True
        return run

    def _save_runs(self, cur, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._runs_saved_at < self.stats_every:
            return
        self._runs_saved_at = now
        stamp = utcnow()
        for source, run in self._runs.items():
            if not run.dirty:
                continue
            run.dirty = False
            if run.run_id is None:
                run.run_id = cur.execute(
                    "INSERT INTO ingest_runs (source, file, started_at) VALUES (?, 'http', ?) RETURNING id",
                    [source, stamp],
                ).fetchone()[0]
            cur.execute(
                "UPDATE ingest_runs SET finished_at = ?, rows_read = ?, rows_loaded = ?, "
                "rows_duplicate = ?, rows_rejected = ? WHERE id = ?",
                [
                    stamp,
                    run.read,
                    run.loaded,
                    run.read - run.loaded - run.rejected,
                    run.rejected,
                    run.run_id,
                ],
            )


_EMPTY = pa.table({})


def _group_table(jobs: list[_Job]) -> pa.Table | None:
    """One table of the group's rows: callers' tables as they are, other rows converted once."""
    tables = [j.rows for j in jobs if isinstance(j.rows, pa.Table) and j.rows.num_rows]
    loose = [row for j in jobs if not isinstance(j.rows, pa.Table) for row in j.rows]
    values = [row for row in loose if isinstance(row, tuple)]
    if values:
        tables.append(events_table_from_values(values))
    if len(values) < len(loose):
        tables.append(events_table([row for row in loose if not isinstance(row, tuple)]))
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _ids_with_hashes(cur, table: pa.Table, hashes) -> list[str]:
    """The table's message ids whose DuckDB hash is one of `hashes`."""
    _group_events = table  # noqa: F841 - read by the SQL
    return [row[0] for row in cur.execute(
        "SELECT message_id FROM _group_events WHERE hash(message_id) IN (SELECT unnest($h))",
        {"h": [int(h) for h in hashes]}).fetchall()]  # fmt: skip


def _first_occurrences(table: pa.Table | None) -> pa.Table | None:
    """The table without repeated message_ids (the first of each is kept)."""
    if table is None:
        return None
    if pc.count_distinct(table.column("message_id")).as_py() == table.num_rows:
        return table
    seen: set[str] = set()
    keep = []
    for i, message_id in enumerate(table.column("message_id").to_pylist()):
        if message_id not in seen:
            seen.add(message_id)
            keep.append(i)
    return table if len(keep) == table.num_rows else table.take(keep)


def _settle(items: list) -> None:
    for future, outcome in items:
        if future.done():  # the request was cancelled (client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
