"""The group-commit writer: one thread owns the store's writes for a running server.

Request handlers hand over validated event rows (and dead letters) with `write()` and wait
on the returned future. The writer thread takes everything queued (up to `max_rows`, after
waiting at most `linger` seconds for more) as one group, appends it to the ingestion journal
(`panorama.ingest.journal`: one write and one fsync per group) and only then resolves the
futures of every request in the group: the HTTP answer 200 means the events are on disk.
A loader thread moves the journaled groups into DuckDB, everything that arrived while the
previous load ran in ONE transaction, which also records the last journal record loaded;
then it runs the real-time hooks over the rows that were new (`panorama.ingest.hooks`). A
failing hook is logged and never un-does anything (the batch path rebuilds derived state
from the log); a failing load is retried (the rows stay in the journal, also across a
restart) and never drops an acknowledged event.

Without a journal (`journal=False`, or a store that is not a file) the writer commits each
group to DuckDB itself and acknowledges after the commit: the design before the journal,
~10 ms of CPU per commit whatever its size.

Deduplication is by `message_id` against the log and within each load (`ingest/dedup.py`).
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from panorama.ingest import hooks
from panorama.ingest import journal as journals
from panorama.ingest.dedup import seen_ids
from panorama.ingest.log import (
    DeadLetter,
    append_dead_letters,
    events_table,
    events_table_from_values,
    utcnow,
)
from panorama.ingest.segment import EVENT_COLUMNS
from panorama.store import Store, one

log = logging.getLogger("panorama.writer")

_COLUMNS = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
# The group's id hashes are checked against the log's (ingest/dedup.py) before the insert;
# a group with a possible duplicate is narrowed to its new rows first. (The hashes read on
# their own cost ~0.1 µs per row; as the insert's RETURNING, ~1 µs.)
_HASHES = "SELECT hash(message_id) AS h FROM _group_events"
_INSERT = f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM _group_events"
# dicts or `normalize_values` tuples (one kind per submission), or a table of EVENT_SCHEMA
# (also as a journal payload: its required values checked by whoever encoded it)
Rows = Sequence[dict] | Sequence[tuple] | pa.Table | journals.EncodedEvents
_SOURCE = EVENT_COLUMNS.index("source")
_JSON = pa.json_(pa.string())
_JSON_COLUMNS = ("traits", "properties", "context")
# The log's NOT NULL columns, checked before a submission is journaled (after it, an error
# could no longer be answered to its request).
_REQUIRED = ("message_id", "type", "source", "timestamp", "received_at")


class WriterClosed(RuntimeError):
    """The writer is stopped (the server is shutting down); nothing was written."""


@dataclass(frozen=True)
class CommitResult:
    """What one submission's group did: `group_rows` rows in the group; `group_new` how many
    were new to the log, or None when acknowledged from the journal (not loaded yet)."""

    submitted: int
    dead_letters: int
    group_rows: int
    group_new: int | None


@dataclass
class WriterStats:
    commits: int = 0  # DuckDB transactions that loaded rows
    rows: int = 0
    new: int = 0
    dead_letters: int = 0
    failed_commits: int = 0
    hook_errors: int = 0
    last_commit_seconds: float = 0.0
    max_commit_seconds: float = 0.0
    max_group_rows: int = 0
    idle_checkpoints: int = 0
    loader_checkpoints: int = 0  # after a load, the WAL over `checkpoint_bytes`
    checkpoint_retries: int = 0  # the loader's checkpoint found another transaction running
    journal_writes: int = 0
    max_journal_seconds: float = 0.0
    backlog_rows: int = 0  # journaled, not loaded yet
    replayed_records: int = 0  # journal records loaded at start-up


def _count_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, (pa.Table, journals.EncodedEvents)) else len(rows)


@dataclass
class _Job:
    rows: Rows  # event-log rows: dicts, tuples, or a table with `EVENT_SCHEMA`
    dead: Sequence[DeadLetter]
    future: asyncio.Future | Future
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class _Batch:
    """A group on its way into the log: its rows (repeats included), dead letters, the last
    journal record holding it (None without a journal) and, without a journal, the jobs to
    answer after the commit."""

    table: pa.Table | None
    letters: list[DeadLetter]
    seq: int | None = None
    jobs: list[_Job] = field(default_factory=list)
    encoded: list[journals.EncodedEvents] = field(default_factory=list)  # rows as payloads

    @property
    def rows(self) -> int:
        return (0 if self.table is None else self.table.num_rows) + sum(e.num_rows for e in self.encoded)

    def tables(self) -> list[pa.Table]:
        """Its rows as tables (the payloads decoded: in the loader, off the event loop)."""
        tables = [self.table] if self.table is not None else []
        tables += [e.table() for e in self.encoded]
        return [t for t in tables if t.num_rows]


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
        journal: bool = True,
        max_rows: int = 10_000,
        load_rows: int = 100_000,
        max_backlog_rows: int = 500_000,
        linger: float = 0.0,
        busy_linger: float = 0.002,
        busy_linger_rows: int = 500,
        run_hooks: bool = True,
        stats_every: float = 1.0,
        idle_checkpoint_bytes: int | None = 16 * 1024 * 1024,
        idle_seconds: float = 0.5,
        load_interval: float = 0.1,
        checkpoint_bytes: int | None = 64 * 1024 * 1024,
        checkpoint_wait: float = 2.0,
        idle_vacuum_tasks: int | None = 4,
    ):
        self.store = store
        self.journal = journals.Journal.beside(store.path) if journal and _is_file(store) else None
        # When the loader has been idle for `idle_seconds` and the WAL holds more than
        # `idle_checkpoint_bytes`, checkpoint then, rather than inside a commit under load.
        self.idle_checkpoint_bytes = idle_checkpoint_bytes
        self.idle_seconds = idle_seconds
        self.max_rows = max_rows  # per journal group
        self.load_rows = load_rows  # per DuckDB load (more waits for the next one)
        # Acknowledged but not loaded: above this the writer waits for the loader (memory).
        self.max_backlog_rows = max_backlog_rows
        self.linger = linger
        # With requests on their way (`incoming`), a group waits `busy_linger` for them: a
        # group costs one fsync whatever its size. Not a group of `busy_linger_rows` or more
        # (a few batch requests): its fsync is shared enough, and the wait only lengthened
        # every batch request (8 connections of batches of 100: +5.7% events/s without it,
        # 12 interleaved pairs of 10-s runs).
        self.busy_linger = busy_linger
        self.busy_linger_rows = busy_linger_rows
        # At most one load per this many seconds: a load costs ~10 ms of CPU whatever its
        # size, part of it holding the GIL the event loop needs (what arrives meanwhile waits
        # in the journal and goes into the next load).
        self.load_interval = load_interval
        # Under a steady load the loader never idles, and DuckDB's automatic checkpoint (at a
        # commit, WAL over `checkpoint_threshold`) is skipped whenever another transaction holds
        # changes - the real-time stages, which start right after each load: in a one-hour soak
        # the WAL grew to 1.2 GB and DuckDB's memory with it. Past this size the loader
        # checkpoints after a load with the real-time passes held off (`Store.checkpoint`: at
        # most `checkpoint_wait` seconds for the pass under way to end). Not FORCE CHECKPOINT:
        # it blocks new statements while it waits, and a transaction whose next statement is
        # blocked never ends - the server deadlocked in a soak with it.
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoint_wait = checkpoint_wait
        # Row-group merges an idle checkpoint may do (`Store.checkpoint`). The server's
        # checkpoints under load do none (`Tuning.vacuum_tasks`): each checkpoint starts a new
        # row group, and DuckDB's merging of those rewrote every event two to three times
        # (3.5 -> 10 µs of CPU per event loaded). An idle loader merges a few at a time
        # instead, once a checkpoint under load left row groups to merge.
        self.idle_vacuum_tasks = idle_vacuum_tasks
        self._unmerged = False  # a checkpoint under load since the last idle one
        self._rows_since_checkpoint = 0
        # Requests between "body received" and `write()` (kept by the HTTP layer, read here).
        self.incoming = 0
        self.run_hooks = run_hooks
        self.stats_every = stats_every
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loads: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        self._closed = False
        self._runs: dict[str, _SourceRun] = {}
        self._runs_saved_at = 0.0
        self._journal_lock = threading.Lock()  # append (writer) vs release (loader)
        self._progress = threading.Condition()
        self._journaled = 0  # the last journal record written
        self._loaded = 0  # the last journal record in the log

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GroupCommitWriter:
        self._warm_up()
        self._replay()
        self._thread = threading.Thread(target=self._run, name="panorama-writer", daemon=True)
        self._thread.start()
        if self.journal is not None:
            self._loader = threading.Thread(target=self._load_run, name="panorama-loader", daemon=True)
            self._loader.start()
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
            _hashes(cur, table)
            _group_events = _for_insert(table)  # noqa: F841 - read by the SQL (a replacement scan)
            cur.execute(_INSERT).fetchall()
        finally:
            cur.execute("ROLLBACK")

    def _replay(self) -> None:
        """Load the journal records the log does not have (acknowledged before a crash)."""
        if self.journal is None:
            return
        cur = self.store.cursor()
        # fetchall: a result left open would keep its transaction (and block CHECKPOINT)
        loaded = cur.execute("SELECT max(loaded_seq) FROM ingest_journal").fetchall()[0][0] or 0
        records = self.journal.open(loaded)
        self._loaded = self._journaled = max(loaded, self.journal.last_seq)
        if not records:
            self.journal.release(loaded)
            return
        started = time.perf_counter()
        batches: list[_Batch] = []
        for record in records:
            if record.kind == journals.EVENTS:
                batch = _Batch(record.events(), [], record.seq)
            else:
                batch = _Batch(None, record.dead_letters(), record.seq)
            batches.append(batch)
            if sum(b.rows for b in batches) >= self.load_rows:
                self._load(cur, batches)
                batches = []
        if batches:
            self._load(cur, batches)
        self.stats.replayed_records += len(records)
        log.warning("loaded %d journal records (%d rows) that were acknowledged but not in the "
                    "log yet, in %.1f s", len(records), self.stats.rows,
                    time.perf_counter() - started)  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """Journal and load everything already queued, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._loader is not None:
            self._loads.put(_STOP)
            self._loader.join(timeout)
        if self.journal is not None:
            with self._journal_lock:
                self.journal.close(self._loaded)

    @property
    def alive(self) -> bool:
        threads = [t for t in (self._thread, self._loader) if t is not None]
        return bool(threads) and all(t.is_alive() for t in threads) and not self._closed

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything acknowledged so far is in the log (True), or `timeout`."""
        if self.journal is None:
            return True
        with self._progress:
            target = self._journaled
            return self._progress.wait_for(lambda: self._loaded >= target, timeout)

    # -- submitting --------------------------------------------------------------------------

    def submit(self, rows: Rows, dead: Sequence[DeadLetter] = ()) -> Future:
        """From any thread: a future resolved with a `CommitResult` once durable."""
        future: Future = Future()
        self._put(_Job(rows, dead, future))
        return future

    def write(self, rows: Rows, dead: Sequence[DeadLetter] = ()) -> asyncio.Future:
        """From the event loop: an awaitable resolved with a `CommitResult` once durable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put(_Job(rows, dead, future, loop))
        return future

    def _put(self, job: _Job) -> None:
        if self._closed or self._thread is None or not self._thread.is_alive():
            raise WriterClosed("the event writer is not running (the server is shutting down)")
        self._queue.put(job)

    # -- the writer thread: groups -> journal (or straight into the log) -------------------------

    def _take(self) -> tuple[list[_Job], bool]:
        """Block for the first job, then take what is queued; returns (jobs, stop)."""
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
                break
            except queue.Empty:
                if self.journal is None:
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
                if (wait <= 0 and self.busy_linger and not deadline and count < self.busy_linger_rows
                        and (len(jobs) > 1 or self.incoming > 0)):  # fmt: skip
                    # Concurrent submitters (or requests being validated right now): a group
                    # costs one fsync whatever its size, so wait a moment for the requests
                    # already on their way.
                    deadline = time.monotonic() + self.busy_linger
                    wait = self.busy_linger
                if wait <= 0:
                    break
                # One sleep, then what queued meanwhile: waiting on the queue instead wakes
                # this thread (and takes the GIL from the event loop) once per submission.
                time.sleep(wait)
                continue
            if job is _STOP:
                self._queue.put(_STOP)  # handle after this group
                break
            jobs.append(job)
            count += _count_rows(job.rows) + len(job.dead)
        return jobs, False

    def _run(self) -> None:
        cur = None if self.journal is not None else self.store.cursor()
        while True:
            jobs, stop = self._take()
            if jobs:
                try:
                    self._group(cur, jobs)
                except Exception as exc:  # never leave a request waiting forever
                    log.exception("the writer failed on a group of %d submissions", len(jobs))
                    self._resolve([(job, exc) for job in jobs if not job.future.done()])
            if stop:
                break
        # Anything that raced with stop (put before `_closed` was seen).
        leftovers = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                leftovers.append(job)
        if leftovers:
            self._group(cur, leftovers)
        if cur is not None:
            try:
                self._save_runs(cur, force=True)
            except Exception:  # pragma: no cover - bookkeeping only
                log.exception("could not save ingest_runs counters")

    def _group(self, cur, jobs: list[_Job]) -> None:
        batch, failed = _prepare(jobs)
        self._resolve(failed)
        if not batch.jobs:
            return
        if self.journal is None:
            self._load(cur, [batch])
            return
        items = []
        if batch.table is not None and batch.table.num_rows:
            items.append((journals.EVENTS, journals.encode_events(batch.table)))
        items += [(journals.EVENTS, e.payload) for e in batch.encoded if e.num_rows]
        if batch.letters:
            items.append((journals.DEAD, journals.encode_dead_letters(batch.letters)))
        self._wait_for_room()
        started = time.perf_counter()
        try:
            with self._journal_lock:
                batch.seq = self.journal.append(items)
        except OSError as exc:
            log.error("could not write the ingestion journal: %s", exc)
            self._resolve([(job, _journal_error(exc)) for job in batch.jobs])
            return
        elapsed = time.perf_counter() - started
        s = self.stats
        s.journal_writes += 1
        s.max_journal_seconds = max(s.max_journal_seconds, elapsed)
        s.max_group_rows = max(s.max_group_rows, batch.rows + len(batch.letters))
        rows = batch.rows
        self._resolve([(j, CommitResult(_count_rows(j.rows), len(j.dead), rows, None)) for j in batch.jobs])
        batch.jobs = []
        with self._progress:
            self._journaled = batch.seq
            s.backlog_rows += rows
        self._loads.put(batch)

    def _wait_for_room(self) -> None:
        """Hold acknowledgements while the loader is this far behind (memory stays bounded)."""
        with self._progress:
            if self.stats.backlog_rows > self.max_backlog_rows:
                self._progress.wait_for(
                    lambda: self.stats.backlog_rows <= self.max_backlog_rows or self._closed, 60
                )

    # -- the loader thread: journaled groups -> the log ---------------------------------------

    def _load_run(self) -> None:
        cur = self.store.cursor()
        pending: list[_Batch] = []
        stopping = False
        backoff = 0.0
        last_load = 0.0
        while True:
            if not pending and not stopping:
                try:
                    first = self._loads.get(timeout=self.idle_seconds)
                except queue.Empty:
                    self._idle_checkpoint()
                    continue
                if first is _STOP:
                    stopping = True
                else:
                    pending.append(first)
                wait = last_load + self.load_interval - time.perf_counter()
                if wait > 0 and not stopping:
                    time.sleep(wait)
            rows = sum(b.rows for b in pending)
            while rows < self.load_rows:
                try:
                    item = self._loads.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                pending.append(item)
                rows += item.rows
            if not pending:
                if stopping:
                    break
                continue
            try:
                last_load = time.perf_counter()
                self._load(cur, pending)
                pending = []
                backoff = 0.0
                self._checkpoint_if_big()
            except Exception as exc:
                # The rows are acknowledged and journaled: keep them, try again (a full disk,
                # a lock); at worst the next start-up loads them from the journal.
                self.stats.failed_commits += 1
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.error("loading %d journaled rows failed (%s); retrying in %.1f s",
                          rows, exc, backoff)  # fmt: skip
                if stopping and backoff >= 10.0:
                    log.error("giving up at shutdown: %d rows stay in the journal and are loaded "
                              "at the next start", rows)  # fmt: skip
                    break
                time.sleep(backoff)
        try:
            self._save_runs(cur, force=True)
        except Exception:  # pragma: no cover - bookkeeping only
            log.exception("could not save ingest_runs counters")

    def _load(self, cur, batches: list[_Batch]) -> None:
        """Append batches to the log in one transaction; then count, answer (without a
        journal) and hand the new rows to the hooks."""
        started = time.perf_counter()
        tables = [t for b in batches for t in b.tables()]
        table = None if not tables else tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        letters = [d for b in batches for d in b.letters]
        seqs = [b.seq for b in batches if b.seq is not None]
        seq = max(seqs) if seqs else None
        try:
            new = self._append(cur, _first_occurrences(table), letters, seq)
        except Exception as exc:
            jobs = [j for b in batches for j in b.jobs]
            if jobs:
                log.exception("commit failed")
                self.stats.failed_commits += 1
                self._resolve([(job, exc) for job in jobs])
                return
            raise
        elapsed = time.perf_counter() - started
        rows = 0 if table is None else table.num_rows
        s = self.stats
        s.commits += 1
        s.rows += rows
        self._rows_since_checkpoint += rows
        s.new += new.num_rows
        s.dead_letters += len(letters)
        s.last_commit_seconds = elapsed
        s.max_commit_seconds = max(s.max_commit_seconds, elapsed)
        jobs = [j for b in batches for j in b.jobs]
        if jobs:
            s.max_group_rows = max(s.max_group_rows, rows + len(letters))
            self._resolve([(j, CommitResult(_count_rows(j.rows), len(j.dead), rows, new.num_rows))
                           for j in jobs])  # fmt: skip
        if seq is not None:
            with self._progress:
                self._loaded = max(self._loaded, seq)
                s.backlog_rows = max(0, s.backlog_rows - sum(b.rows for b in batches))
                self._progress.notify_all()
            with self._journal_lock:
                self.journal.release(self._loaded)
        self._count(table, letters, new)
        try:
            self._save_runs(cur)
        except Exception:  # bookkeeping only; the events are committed
            log.exception("could not save ingest_runs counters")
        if self.run_hooks and new.num_rows:
            try:
                hooks.submit(self.store, new)
            except Exception:  # hooks.run has logged which hook failed; the events stay stored
                s.hook_errors += 1

    def _checkpoint_if_big(self) -> None:
        if not self.checkpoint_bytes or self.store.wal_bytes() <= self.checkpoint_bytes:
            return
        started = time.perf_counter()
        try:
            done = self.store.checkpoint(wait=self.checkpoint_wait)
        except Exception:  # the WAL stays; DuckDB or the next load tries again
            log.exception("checkpoint failed")
            return
        if not done:  # another transaction with changes was running: after the next load
            self.stats.checkpoint_retries += 1
            return
        self.stats.loader_checkpoints += 1
        self._unmerged = True
        self._rows_since_checkpoint = 0
        log.info("checkpoint in %.2f s", time.perf_counter() - started)

    def _idle_checkpoint(self) -> None:
        if not self.idle_checkpoint_bytes:
            return
        size = self.store.wal_bytes()
        # (DuckDB merges only a table that changed since the last checkpoint: new events)
        merge = self._unmerged and self._rows_since_checkpoint > 0
        if size > self.idle_checkpoint_bytes or merge:
            started = time.perf_counter()
            try:
                if not self.store.checkpoint(wait=self.checkpoint_wait,
                                             vacuum_tasks=self.idle_vacuum_tasks):  # fmt: skip
                    return
            except Exception:  # pragma: no cover - DuckDB checkpoints at the threshold anyway
                log.exception("idle checkpoint failed")
                return
            self.stats.idle_checkpoints += 1
            self._unmerged = False
            self._rows_since_checkpoint = 0
            log.info(
                "idle checkpoint of a %.0f MB WAL in %.2f s",
                size / 2**20,
                time.perf_counter() - started,
            )

    def _append(self, cur, table: pa.Table | None, letters: list[DeadLetter],
                seq: int | None) -> pa.Table:  # fmt: skip
        """Append in one transaction; returns the rows that were new to the log."""
        seen = seen_ids(self.store)
        with seen.lock:
            if table is not None and table.num_rows:
                hashes = _hashes(cur, table)
                flagged = seen.maybe(hashes)
                if flagged.any():
                    # Some id may be in the log (an SDK retry, or a hash collision): find
                    # which exactly, and insert the others.
                    old = seen.existing(cur, _ids_with_hashes(cur, table, hashes[flagged]))
                    is_old = pc.is_in(
                        table.column("message_id"), value_set=pa.array(sorted(old), pa.string())
                    )
                    keep = pc.invert(is_old)
                    table = table.filter(keep)
                    hashes = hashes[keep.to_numpy()]
                seen.add(hashes)
            self._transaction(cur, table, letters, seq)
            if table is not None and table.num_rows:
                seen.committed(table.column("message_id").to_pylist())
        return table if table is not None else _EMPTY

    @staticmethod
    def _transaction(cur, table: pa.Table | None, letters: list[DeadLetter], seq: int | None) -> None:
        """Insert and commit."""
        cur.execute("BEGIN TRANSACTION")
        try:
            if table is not None and table.num_rows:
                # DuckDB finds `_group_events` among this frame's locals (a replacement scan):
                # registering a view instead costs a catalog change per commit (~2x slower).
                _group_events = _for_insert(table)  # noqa: F841 - read by the SQL
                cur.execute(_INSERT)
            if letters:
                append_dead_letters(cur, letters)
            if seq is not None:
                cur.execute("UPDATE ingest_journal SET loaded_seq = ?", [seq])
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

    def _count(self, table: pa.Table | None, letters: list[DeadLetter], new: pa.Table) -> None:
        if table is not None and table.num_rows:
            for item in table.column("source").value_counts().to_pylist():
                self._run_for(item["values"]).read += item["counts"]
        for letter in letters:
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
                run.run_id = one(cur.execute(
                    "INSERT INTO ingest_runs (source, file, started_at) VALUES (?, 'http', ?) RETURNING id",
                    [source, stamp],
                ))[0]
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


def replay_journal(store: Store) -> int:
    """Load the journal records a stopped (or killed) server acknowledged but did not load,
    without the real-time hooks (the batch commands rebuild derived state from the log).
    `open_store` calls this on every writable open; returns the number of records loaded."""
    if not _is_file(store) or not any(journals.Journal.beside(store.path).directory.glob("*.seg")):
        return 0
    writer = GroupCommitWriter(store, run_hooks=False)
    writer._replay()
    writer.journal.close(writer._loaded)
    return writer.stats.replayed_records


def _is_file(store: Store) -> bool:
    return str(store.path) not in ("", ":memory:")


def _journal_error(exc: OSError) -> Exception:
    reason = "the disk is full" if exc.errno == 28 else str(exc)
    return OSError(exc.errno, f"the ingestion journal could not be written ({reason})")


def _prepare(jobs: list[_Job]) -> tuple[_Batch, list[tuple[_Job, Exception]]]:
    """The group as one batch, and the submissions that cannot go in it with their error
    (rows that do not convert, or without a value the log requires)."""
    try:
        table = _group_table(jobs)
        check_required(table)
        return _batch_of(jobs, table), []
    except Exception as exc:
        if len(jobs) == 1:
            return _Batch(None, [], jobs=[]), [(jobs[0], exc)]
    good, failed = [], []
    for job in jobs:  # which one: each alone
        try:
            check_required(_group_table([job]))
            good.append(job)
        except Exception as exc:
            failed.append((job, exc))
    return _batch_of(good, _group_table(good)), failed


def _batch_of(jobs: list[_Job], table: pa.Table | None) -> _Batch:
    encoded = [j.rows for j in jobs if isinstance(j.rows, journals.EncodedEvents)]
    return _Batch(table, [d for j in jobs for d in j.dead], jobs=jobs, encoded=encoded)


def check_required(table: pa.Table | None) -> None:
    if table is None:
        return
    for name in _REQUIRED:
        if table.column(name).null_count:
            raise ValueError(f"NOT NULL constraint failed: events.{name} has no value")


def _group_table(jobs: list[_Job]) -> pa.Table | None:
    """One table of the group's rows: callers' tables as they are, other rows converted once
    (rows given as journal payloads stay apart: `_Batch.encoded`)."""
    tables = [j.rows for j in jobs if isinstance(j.rows, pa.Table) and j.rows.num_rows]
    loose = [row for j in jobs if not isinstance(j.rows, (pa.Table, journals.EncodedEvents)) for row in j.rows]
    values = [row for row in loose if isinstance(row, tuple)]
    if values:
        tables.append(events_table_from_values(values))
    if len(values) < len(loose):
        tables.append(events_table([row for row in loose if not isinstance(row, tuple)]))
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _for_insert(table: pa.Table) -> pa.Table:
    """The table as DuckDB reads it fastest: one chunk (a load gathers one chunk per request;
    DuckDB's scan of 100 chunks of 100 rows costs ~4 µs more per row than of one chunk of
    10,000, the copy ~0.3 µs), and the JSON columns as Arrow's JSON extension type
    (zero-copy): DuckDB then takes their text as JSON without parsing it again (~1.7 µs per
    event). Their text is JSON already: msgspec's checked slices of the request, or orjson's
    output (`panorama.ingest.segment`)."""
    if table.num_rows and table.column(0).num_chunks > 1:
        table = table.combine_chunks()
    for name in _JSON_COLUMNS:
        i = table.schema.get_field_index(name)
        column = table.column(i)
        if column.type != _JSON:
            chunks = [pa.ExtensionArray.from_storage(_JSON, chunk) for chunk in column.chunks]
            table = table.set_column(i, pa.field(name, _JSON), pa.chunked_array(chunks, _JSON))
    return table


def _hashes(cur, table: pa.Table) -> np.ndarray:
    """DuckDB's hash of each row's message_id (what `SeenIds` keeps)."""
    _group_events = table.select(["message_id"])  # noqa: F841 - read by the SQL
    return cur.execute(_HASHES).fetchnumpy()["h"]


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
