"""The project store: one DuckDB file holding the log and everything derived from it.

Only one process may write a DuckDB file. `open_store` opens it, applies pending
migrations, and turns DuckDB's lock error into a message that says what to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from panorama.modules import optional_import
from panorama.store.schema import MODULE_SCHEMAS, Migration

T = TypeVar("T")


def one(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a query's result (None if it has none), the result read to its end.

    Use this, never `fetchone()`: a result read only in part keeps its transaction open until
    the cursor's next statement, and while it is open every CHECKPOINT fails ("other write
    transactions active") once anyone has committed an UPDATE meanwhile. A server thread that
    reads one row and then idles (the event loop, a request thread) so stopped every checkpoint:
    under load DuckDB's WAL, and its memory, grew by 2 GB a minute."""
    rows = result.fetchall()
    return rows[0] if rows else None


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and what to do."""


class WriteGate:
    """Background writers against checkpoints, inside one process.

    DuckDB's plain CHECKPOINT fails while another transaction holds updates or deletes, and
    FORCE CHECKPOINT blocks every new statement until the others finish (a thread waiting for
    one of them never gets there: a deadlock). Under a steady load the real-time stages write
    almost all the time, right after each load, so a checkpoint tried then never finds a gap
    and the WAL grows without end. The background writers (the real-time stages) hold this
    gate shared for each pass; a checkpoint takes it exclusively for as long as the CHECKPOINT
    runs. A waiting checkpoint stops new passes from starting (writer preference), so it gets
    in after the passes under way end. Reentrant for the shared side (a pass may nest)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
                self._shared += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._shared -= 1
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout: float) -> Iterator[bool]:
        """Yields whether the gate was taken within `timeout` seconds (if not, the caller goes
        on without it; the passes under way are not disturbed)."""
        if getattr(self._local, "depth", 0):  # a thread inside a pass: it would wait for itself
            yield False
            return
        with self._cond:
            self._waiting += 1
            try:
                got = self._cond.wait_for(lambda: not self._exclusive and not self._shared, timeout)
                if got:
                    self._exclusive = True
            finally:
                self._waiting -= 1
                self._cond.notify_all()
        try:
            yield got
        finally:
            if got:
                with self._cond:
                    self._exclusive = False
                    self._cond.notify_all()


class Store:
    """A DuckDB connection to the project's store. Use `cursor()` per thread."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only
        self._local = threading.local()
        self._recent: dict[str, tuple[float, object]] = {}
        self.gate = WriteGate()

    def wal_bytes(self) -> int:
        try:
            return Path(str(self.path) + ".wal").stat().st_size
        except OSError:
            return 0

    def checkpoint(self, wait: float = 2.0, vacuum_tasks: int | None = None) -> bool:
        """Fold the WAL into the database file: a plain CHECKPOINT, run while the background
        writers are held off (`WriteGate`, at most `wait` seconds to get there). Returns False
        when another transaction with changes was still running (try again later).

        `vacuum_tasks`: at most this many row-group merges in this checkpoint (DuckDB's
        `max_vacuum_tasks`, a merge rewrites up to three row groups; None: the setting as it
        is). The server checkpoints under load without them (`Tuning.vacuum_tasks`)."""
        with self.gate.exclusive(wait) as got:
            if not got:
                return False
            cur = self.cursor()
            before = None
            if vacuum_tasks is not None:
                before = one(cur.execute("SELECT current_setting('max_vacuum_tasks')"))[0]
                cur.execute(f"SET GLOBAL max_vacuum_tasks = {int(vacuum_tasks)}")
            try:
                cur.execute("CHECKPOINT")
            except duckdb.TransactionException:  # a request's write transaction, rarely
                return False
            finally:
                if before is not None:
                    cur.execute(f"SET GLOBAL max_vacuum_tasks = {int(before)}")
            return True

    def recent(self, key: str, seconds: float, compute: Callable[[], T]) -> T:
        """`compute()`, reused for `seconds` (for checks that real-time hooks would otherwise
        run on every micro-batch: does a table exist yet, which run is the latest)."""
        now = time.monotonic()
        hit = self._recent.get(key)
        if hit is not None and now - hit[0] < seconds:
            return hit[1]
        value = compute()
        self._recent[key] = (now, value)
        return value

    def forget_recent(self) -> None:
        """After a batch run changed what `recent` checks (a traits run, a unify)."""
        self._recent.clear()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (DuckDB connections are not shared across threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self.con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.cursor = cur
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def execute(self, sql: str, params: list | tuple | dict | None = None) -> duckdb.DuckDBPyConnection:
        return self.cursor().execute(sql, params) if params is not None else self.cursor().execute(sql)

    def scalar(self, sql: str, params: list | tuple | None = None):
        row = one(self.execute(sql, params))
        return row[0] if row else None

    def table_exists(self, name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
            )
        )

    def close(self) -> None:
        from panorama.ingest.dedup import forget_store

        if not self.read_only:
            forget_store(self.path)
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def log_fingerprint(store: Store) -> str:
    """Changes whenever the log (events, records) changes: counts and latest arrival times."""
    return "|".join(
        str(store.scalar(sql))
        for sql in (
            "SELECT count(*) || '/' || coalesce(max(received_at)::VARCHAR, '') FROM events",
            "SELECT count(*) || '/' || coalesce(max(ingested_at)::VARCHAR, '') FROM records",
        )
    )


def identity_fingerprint(store: Store) -> str:
    """Changes whenever identity resolution changes (a run, a merge, a split)."""
    parts = []
    for table in ("identity_runs", "identity_merges", "profiles"):  # whichever identity keeps
        if store.table_exists(table):
            parts.append(str(store.scalar(f"SELECT count(*) FROM {table}")))
    return "|".join(parts)


def _module_migrations() -> list[Migration]:
    migrations: list[Migration] = []
    for module_name, versions in MODULE_SCHEMAS.items():
        module = optional_import(module_name)
        if module is None:  # that module has no tables (yet)
            continue
        for migration in module.MIGRATIONS:
            if migration.version not in versions:
                raise StoreError(
                    f"{module_name}: migration {migration.version} is outside its range "
                    f"{versions.start}-{versions.stop - 1}"
                )
            migrations.append(migration)
    return sorted(migrations, key=lambda m: m.version)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations; returns the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for migration in _module_migrations():
        if migration.version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [migration.version, migration.name],
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        applied.append(migration.version)
    return applied


def open_store(path: Path | str, read_only: bool = False, replay_journal: bool = True) -> Store:
    """Open (and migrate) the store. A writable open first loads what the ingestion journal
    of a server that stopped holds beyond the log (`panorama.ingest.writer.replay_journal`);
    the server passes `replay_journal=False` and replays with its real-time hooks instead."""
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"{path}: no store yet; run `panorama ingest` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(
                f"{path}: the store is in use by another process (is `panorama serve` running?). "
                "Stop it, or send data through its HTTP API instead."
            ) from None
        raise StoreError(f"{path}: cannot open the store: {exc}") from None
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        migrate(con)
    store = Store(path, con, read_only)
    if replay_journal and not read_only:
        from panorama.ingest.writer import replay_journal as replay  # the store is below ingest

        replay(store)
    return store
