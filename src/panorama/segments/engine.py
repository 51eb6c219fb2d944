"""Evaluating segments and keeping their membership: batch, real time and the clock share this.

A segment's compiled expression is evaluated by ONE query shape (`evaluation_sql`) over a set
of profiles: all of them (batch refresh, the clock), or the profiles an event batch touched
(real time). The result is compared with the current members of those profiles; entries and
exits are written to `segment_membership` with their time and cause, and handed to the
activation module (triggers) in the same transaction, so an entry and the actions it triggers
are committed together.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa

from panorama.config import ProjectConfig
from panorama.ingest.log import utcnow
from panorama.segments.catalog import Catalog, build_catalog, q
from panorama.segments.language import CompiledSegment, SegmentError, bind_now, compile_segment
from panorama.store import Store, one

log = logging.getLogger("panorama.segments")

# Causes recorded with entries and exits. Triggers fire for realtime, clock and batch changes;
# not for a backfill (the first evaluation of a new or changed definition) nor a removal.
TRIGGERING = frozenset({"realtime", "clock", "batch"})


@dataclass(frozen=True)
class Change:
    segment: str
    profile_id: str
    kind: str  # enter | exit
    at: datetime
    by: str


@dataclass
class SegmentSet:
    """The project's segments compiled against the profile catalog of a store."""

    catalog: Catalog
    compiled: dict[str, CompiledSegment]
    errors: dict[str, str]
    config: ProjectConfig

    @classmethod
    def build(cls, store: Store, config: ProjectConfig, catalog: Catalog | None = None) -> SegmentSet:
        catalog = catalog or build_catalog(store)
        compiled, errors = {}, {}
        for name, seg in config.segments.items():
            try:
                c = compile_segment(seg.where, catalog.columns)
                _bind_check(store, catalog, c)
                compiled[name] = c
            except SegmentError as exc:
                errors[name] = f"segments.{name}.where: {exc}"
        return cls(catalog, compiled, errors, config)

    def time_dependent(self) -> list[str]:
        return [n for n, c in self.compiled.items() if c.time_dependent]


def _bind_check(store: Store, catalog: Catalog, compiled: CompiledSegment) -> None:
    """Let DuckDB bind the expression on zero rows: type errors surface now, not at run time."""
    sql = evaluation_sql(catalog, {"check": compiled}, "SELECT NULL::VARCHAR AS profile_id LIMIT 0",
                         utcnow())  # fmt: skip
    try:
        store.execute(f"EXPLAIN {sql}").fetchall()
    except Exception as exc:  # duckdb.Error subclasses
        message = str(exc).split("\n")[0]
        raise SegmentError(f"cannot be evaluated: {message}") from None


def check_expression(store: Store, expression: str, catalog: Catalog | None = None) -> CompiledSegment:
    """Compile and bind-check one expression (for `segments check` and the API)."""
    catalog = catalog or build_catalog(store)
    compiled = compile_segment(expression, catalog.columns)
    _bind_check(store, catalog, compiled)
    return compiled


# -- the one query -----------------------------------------------------------------------------


def _source_ctes(catalog: Catalog, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """CTEs selecting the used columns of each source for the profiles in `ids`; and joins."""
    by_source: dict[str, list[str]] = {}
    for name in names:
        owner = catalog.owner.get(name)
        if owner and owner != "_ids":
            by_source.setdefault(owner, []).append(name)
    ctes, joins = [], []
    for i, source in enumerate(catalog.sources):
        cols = by_source.get(source.name)
        if not cols:
            continue
        alias = f"_src{i}"
        ctes.append(f"{alias} AS (SELECT {source.select(sorted(cols))} FROM ({source.for_ids('_ids', cols)}))")
        joins.append(f"LEFT JOIN {alias} USING (profile_id)")
    return ctes, joins


def evaluation_sql(catalog: Catalog, segments: dict[str, CompiledSegment], ids_sql: str | None,
                   now: datetime) -> str:  # fmt: skip
    """profile_id and one boolean column per segment (named as the segment) for the profiles of
    `ids_sql` (None: every profile), as of `now`."""
    used = set().union(*(c.columns for c in segments.values())) if segments else set()
    ctes = [f"_ids AS (SELECT DISTINCT profile_id FROM ({ids_sql or catalog.universe_sql}) "
            "WHERE profile_id IS NOT NULL)"]  # fmt: skip
    source_ctes, joins = _source_ctes(catalog, used)
    ctes += source_ctes
    conditions = {}
    for c in segments.values():
        for cond in c.events:
            conditions[cond.alias] = cond
    if conditions:
        aggs = ", ".join(cond.aggregate_sql("CAST('__PANORAMA_NOW__' AS TIMESTAMP)")
                         for cond in conditions.values())  # fmt: skip
        names = {e for cond in conditions.values() for e in cond.events}
        # only the events some condition counts (a cheap filter on a column, before the profile)
        relevant = "" if any(not cond.events for cond in conditions.values()) else \
            " AND event IN (" + ", ".join("'" + e.replace("'", "''") + "'" for e in sorted(names)) + ")"  # fmt: skip
        ctes.append(f"_ev AS (SELECT profile_id, {aggs} FROM ({catalog.events_sql}) "
                    f"WHERE profile_id IN (SELECT profile_id FROM _ids){relevant} GROUP BY profile_id)")  # fmt: skip
        joins.append("LEFT JOIN _ev USING (profile_id)")
    cols = ", ".join(f"coalesce(({c.sql}), false) AS {q(name)}" for name, c in segments.items())
    sql = f"WITH {', '.join(ctes)} SELECT profile_id{', ' + cols if cols else ''} FROM _ids {' '.join(joins)}"
    return bind_now(sql, now)


def profile_rows_sql(catalog: Catalog, ids_sql: str | None, columns: Iterable[str] | None = None) -> str:
    """The profile rows (every known column, or `columns`) of the profiles in `ids_sql`."""
    names = [c for c in (columns if columns is not None else catalog.columns) if c != "profile_id"]
    unknown = [c for c in names if c not in catalog.columns]
    if unknown:
        raise SegmentError(f"unknown column(s) {', '.join(unknown)}")
    ctes = [f"_ids AS (SELECT DISTINCT profile_id FROM ({ids_sql or catalog.universe_sql}) "
            "WHERE profile_id IS NOT NULL)"]  # fmt: skip
    source_ctes, joins = _source_ctes(catalog, names)
    select = ", ".join(["profile_id", *(q(n) for n in names)])
    return f"WITH {', '.join(ctes + source_ctes)} SELECT {select} FROM _ids {' '.join(joins)}"


def profile_rows(store: Store, catalog: Catalog, profile_ids: Iterable[str],
                 cur=None) -> dict[str, dict]:  # fmt: skip
    """Profile rows by id (for action payloads and templates)."""
    ids = sorted(set(profile_ids))
    if not ids:
        return {}
    cur = cur or store.cursor()
    table = pa.table({"profile_id": pa.array(ids, pa.string())})
    name = f"_rows_ids_{threading.get_ident()}"
    cur.register(name, table)
    try:
        result = cur.execute(profile_rows_sql(catalog, f"SELECT profile_id FROM {name}"))
        names = [d[0] for d in result.description]
        out = {row[0]: dict(zip(names, row, strict=True)) for row in result.fetchall()}
        # attributes that appeared after the catalog was built (new identify traits)
        for pid, key, value in cur.execute(_latest_attributes_sql(catalog, name)).fetchall():
            row = out.get(pid)
            if row is not None and row.get(key) is None:
                row[key] = orjson.loads(value) if value is not None else None
    finally:
        cur.unregister(name)
    return out


def _latest_attributes_sql(catalog: Catalog, ids: str) -> str:
    """(profile_id, key, JSON value): every attribute of the profiles in `ids`, latest first."""
    if catalog.mode == "events":
        return f"""
            SELECT profile_id, k, arg_max(json_extract(traits, '$."' || replace(k, '"', '\\"') || '"'), timestamp)::VARCHAR
            FROM (SELECT profile_id, traits, timestamp, unnest(json_keys(traits)) AS k
                  FROM ({catalog.events_sql}) WHERE traits IS NOT NULL AND json_type(traits) = 'OBJECT'
                    AND profile_id IN (SELECT profile_id FROM {ids}))
            GROUP BY profile_id, k
        """  # fmt: skip
    profile = catalog.source("profile")
    if profile.columns.get("attributes") not in ("JSON", "VARCHAR"):
        return "SELECT NULL, NULL, NULL WHERE false"
    return f"""
        SELECT profile_id, k, json_extract(j, '$."' || replace(k, '"', '\\"') || '"')::VARCHAR
        FROM (SELECT profile_id, j, unnest(json_keys(j)) AS k FROM (
              SELECT profile_id, TRY_CAST(attributes AS JSON) AS j FROM ({profile.sql})
              WHERE profile_id IN (SELECT profile_id FROM {ids})) WHERE json_type(j) = 'OBJECT')
    """  # fmt: skip


# -- membership --------------------------------------------------------------------------------


def current_members_sql(segment: str | None = None) -> str:
    where = "exited_at IS NULL" + (f" AND segment = '{segment.replace(chr(39), chr(39) * 2)}'" if segment else "")
    return f"SELECT segment, profile_id, entered_at FROM segment_membership WHERE {where}"


def _diff_sql(segments: Iterable[str], restricted: bool) -> str:
    """Entries and exits: `_seg_eval` (the evaluation) against current membership. Restricted:
    only profiles that were evaluated can exit."""
    parts = []
    for name in segments:
        lit = "'" + name.replace("'", "''") + "'"
        scope = "AND m.profile_id IN (SELECT profile_id FROM _seg_eval)" if restricted else ""
        parts.append(f"""
            SELECT {lit} AS segment, e.profile_id, 'enter' AS kind FROM _seg_eval e
            WHERE e.{q(name)} AND e.profile_id NOT IN (
                SELECT profile_id FROM segment_membership WHERE segment = {lit} AND exited_at IS NULL)
            UNION ALL
            SELECT {lit}, m.profile_id, 'exit' FROM segment_membership m
            WHERE m.segment = {lit} AND m.exited_at IS NULL {scope}
              AND m.profile_id NOT IN (SELECT profile_id FROM _seg_eval WHERE {q(name)})
        """)
    return " UNION ALL ".join(parts)


def diff(cur, segset: SegmentSet, names: list[str], ids_sql: str | None, now: datetime,
         by: str | dict[str, str]) -> list[Change]:  # fmt: skip
    """Evaluate `names` over `ids_sql` (None: all profiles) and return the changes."""
    if not names:
        return []
    segments = {n: segset.compiled[n] for n in names}
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _seg_eval AS {evaluation_sql(segset.catalog, segments, ids_sql, now)}")
    try:
        rows = cur.execute(_diff_sql(names, restricted=ids_sql is not None)).fetchall()
    finally:
        cur.execute("DROP TABLE IF EXISTS _seg_eval")
    causes = by if isinstance(by, dict) else dict.fromkeys(names, by)
    return [Change(seg, pid, kind, now, causes[seg]) for seg, pid, kind in rows]


def apply(cur, store: Store, segset: SegmentSet, changes: list[Change]) -> None:
    """Write changes (inside the caller's transaction) and hand them to the triggers."""
    if not changes:
        return
    enters = [c for c in changes if c.kind == "enter"]
    exits = [c for c in changes if c.kind == "exit"]
    name = f"_seg_changes_{threading.get_ident()}"
    for group, sql in (
        (exits, f"""UPDATE segment_membership m SET exited_at = x.changed_at, exited_by = x.cause
                    FROM {name} x WHERE m.segment = x.segment AND m.profile_id = x.profile_id
                    AND m.exited_at IS NULL"""),
        (enters, f"""INSERT INTO segment_membership (segment, profile_id, entered_at, entered_by)
                     SELECT segment, profile_id, changed_at, cause FROM {name}"""),
    ):  # fmt: skip
        if not group:
            continue
        table = pa.table({
            "segment": [c.segment for c in group], "profile_id": [c.profile_id for c in group],
            "changed_at": pa.array([c.at for c in group], pa.timestamp("us")),
            "cause": [c.by for c in group],
        })  # fmt: skip
        cur.register(name, table)
        try:
            cur.execute(sql)
        finally:
            cur.unregister(name)
    triggering = [c for c in changes if c.by in TRIGGERING]
    if triggering:
        handler = _change_handler()
        if handler is not None:
            handler(cur, store, segset, triggering)


def _change_handler():
    """Activation's handler of entries and exits (absent until that module exists)."""
    try:
        module = importlib.import_module("panorama.activate.triggers")
    except ModuleNotFoundError as exc:
        if exc.name and "panorama.activate".startswith(exc.name):
            return None
        raise
    return getattr(module, "on_segment_changes", None)


_local = threading.local()


@contextlib.contextmanager
def transaction(cur):
    """A transaction on `cur`; callbacks given to `after_commit` inside it run after COMMIT."""
    cur.execute("BEGIN TRANSACTION")
    _local.callbacks = []
    try:
        yield cur
    except BaseException:
        _local.callbacks = None
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
    callbacks, _local.callbacks = _local.callbacks, None
    for callback in callbacks or ():
        try:
            callback()
        except Exception:  # pragma: no cover - a notification must not undo a commit
            log.exception("after-commit callback failed")


def after_commit(callback) -> None:
    """Run `callback` once the current transaction (of this thread) commits; now if none."""
    pending = getattr(_local, "callbacks", None)
    if pending is None:
        callback()
    else:
        pending.append(callback)


# -- definitions -------------------------------------------------------------------------------


@dataclass
class Sync:
    backfill: list[str] = field(default_factory=list)  # new or changed: evaluate without triggers
    removed: list[str] = field(default_factory=list)


def sync_definitions(cur, segset: SegmentSet, now: datetime) -> Sync:
    """Record the configured definitions; say which need a backfill and which were removed."""
    stored = {r[0]: r for r in cur.execute(
        "SELECT segment, fingerprint, refreshed_at, removed_at FROM segment_definitions").fetchall()}  # fmt: skip
    result = Sync()
    for name, seg in segset.config.segments.items():
        compiled = segset.compiled.get(name)
        error = segset.errors.get(name)
        fingerprint = compiled.fingerprint if compiled else None
        row = stored.get(name)
        if row is None:
            cur.execute(
                "INSERT INTO segment_definitions (segment, expression, compiled_sql, fingerprint, "
                "time_dependent, error, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)",
                [name, seg.where, compiled.sql if compiled else None,
                 bool(compiled and compiled.time_dependent), error, now, now],
            )  # fmt: skip
            if compiled:
                result.backfill.append(name)
            continue
        cur.execute(
            "UPDATE segment_definitions SET expression = ?, compiled_sql = ?, time_dependent = ?, "
            "error = ?, removed_at = NULL, updated_at = CASE WHEN expression = ? THEN updated_at ELSE ? END "
            "WHERE segment = ?",
            [seg.where, compiled.sql if compiled else None, bool(compiled and compiled.time_dependent),
             error, seg.where, now, name],
        )  # fmt: skip
        if compiled and (row[1] != fingerprint or row[2] is None or row[3] is not None):
            result.backfill.append(name)
    for name, row in stored.items():
        if name not in segset.config.segments and row[3] is None:
            result.removed.append(name)
    return result


def _profile_keys_changed(cur, catalog: Catalog) -> bool:
    """Did profile ids change meaning since the last refresh (the first identity resolution
    replaces the fallback keys)? Then every profile "enters" anew: a backfill, no triggers."""
    row = one(cur.execute("SELECT value FROM segment_state WHERE key = 'profile_keys'"))
    return row is not None and row[0] != catalog.mode


def _mark_refreshed(cur, names: Iterable[str], segset: SegmentSet, now: datetime) -> None:
    cur.execute("INSERT OR REPLACE INTO segment_state (key, value) VALUES ('profile_keys', ?)",
                [segset.catalog.mode])  # fmt: skip
    for name in names:
        cur.execute("UPDATE segment_definitions SET fingerprint = ?, refreshed_at = ? WHERE segment = ?",
                    [segset.compiled[name].fingerprint, now, name])  # fmt: skip


# -- refresh (batch and clock) -----------------------------------------------------------------


@dataclass
class RefreshResult:
    evaluated: list[str]
    entered: dict[str, int]
    exited: dict[str, int]
    seconds: float
    errors: dict[str, str]
    changes: list[Change] = field(default_factory=list, repr=False)


def refresh(store: Store, segset: SegmentSet, names: list[str] | None = None,
            now: datetime | None = None, by: str = "batch",
            lock: threading.Lock | contextlib.AbstractContextManager | None = None,
            backfill_only: bool = False) -> RefreshResult:  # fmt: skip
    """Evaluate segments over every profile and record the entries and exits.

    With `lock` (the running server, where events update membership concurrently): the full
    evaluation runs unlocked, then only its candidate changes are evaluated again under the
    lock and applied, so a concurrent real-time update is never overwritten by stale results.
    """
    started = time.perf_counter()
    now = now or utcnow()
    cur = store.cursor()
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard, transaction(cur):
        sync = sync_definitions(cur, segset, now)
        if sync.removed:
            removed = [Change(seg, pid, "exit", now, "removed") for seg, pid, _ in cur.execute(
                f"SELECT * FROM ({current_members_sql()}) WHERE segment IN "
                f"({', '.join(repr(s) for s in sync.removed)})").fetchall()]  # fmt: skip
            apply(cur, store, segset, removed)
            cur.execute(f"UPDATE segment_definitions SET removed_at = ? WHERE segment IN "
                        f"({', '.join('?' for _ in sync.removed)})", [now, *sync.removed])  # fmt: skip
    wanted = [n for n in (names if names is not None else segset.compiled) if n in segset.compiled]
    if backfill_only:
        wanted = [n for n in wanted if n in sync.backfill]
    rekeyed = _profile_keys_changed(cur, segset.catalog)
    causes = {n: ("backfill" if n in sync.backfill or rekeyed else by) for n in wanted}
    changes: list[Change] = []
    if wanted:
        if lock is None:
            with transaction(cur):
                changes = diff(cur, segset, wanted, None, now, causes)
                apply(cur, store, segset, changes)
                _mark_refreshed(cur, wanted, segset, now)
        else:
            candidates = diff(cur, segset, wanted, None, now, causes)
            ids = sorted({c.profile_id for c in candidates})
            with lock, transaction(cur):
                if ids:
                    name = f"_seg_ids_{threading.get_ident()}"
                    cur.register(name, pa.table({"profile_id": pa.array(ids, pa.string())}))
                    try:
                        changes = diff(cur, segset, wanted, f"SELECT profile_id FROM {name}", now, causes)
                    finally:
                        cur.unregister(name)
                    apply(cur, store, segset, changes)
                _mark_refreshed(cur, wanted, segset, now)
    entered = {n: 0 for n in wanted}
    exited = {n: 0 for n in wanted}
    for c in changes:
        (entered if c.kind == "enter" else exited)[c.segment] += 1
    return RefreshResult(wanted, entered, exited, time.perf_counter() - started, segset.errors, changes)


def evaluate_profiles(store: Store, segset: SegmentSet, profile_ids_sql: str, now: datetime | None = None,
                      by: str = "realtime", cur=None) -> list[Change]:  # fmt: skip
    """Real time: re-evaluate every segment for the profiles of `profile_ids_sql` (a query on
    the caller's cursor) and apply the changes. The caller holds the segments lock.

    A segment whose current definition has not been backfilled yet (the server's start-up
    refresh is still running) is evaluated too, its changes recorded as `backfill` (no
    triggers): so no event falls between the backfill's snapshot and real time."""
    cur = cur or store.cursor()
    now = now or utcnow()
    names = list(segset.compiled)
    if not names:
        return []
    live = set(live_segments(cur, segset))
    causes = {n: (by if n in live else "backfill") for n in names}
    with transaction(cur):
        changes = diff(cur, segset, names, profile_ids_sql, now, causes)
        apply(cur, store, segset, changes)
    return changes


def live_segments(cur, segset: SegmentSet) -> list[str]:
    """Segments evaluated in real time: compiled, and backfilled with the current definition."""
    rows = cur.execute("SELECT segment, fingerprint FROM segment_definitions "
                       "WHERE removed_at IS NULL AND refreshed_at IS NOT NULL").fetchall()  # fmt: skip
    done = dict(rows)
    return [n for n, c in segset.compiled.items() if done.get(n) == c.fingerprint]


# -- reading -----------------------------------------------------------------------------------


@dataclass
class SegmentInfo:
    name: str
    expression: str
    members: int
    time_dependent: bool
    refreshed_at: datetime | None
    error: str | None
    description: str | None = None


def list_segments(store: Store, config: ProjectConfig, segset: SegmentSet | None = None) -> list[SegmentInfo]:
    sizes = dict(store.execute(
        "SELECT segment, count(*) FROM segment_membership WHERE exited_at IS NULL GROUP BY segment").fetchall())  # fmt: skip
    stored = {r[0]: r[1:] for r in store.execute(
        "SELECT segment, refreshed_at, time_dependent, error FROM segment_definitions").fetchall()}  # fmt: skip
    out = []
    for name, seg in config.segments.items():
        refreshed, time_dep, error = stored.get(name, (None, None, None))
        if segset is not None:
            error = segset.errors.get(name)
            compiled = segset.compiled.get(name)
            time_dep = bool(compiled and compiled.time_dependent)
        out.append(SegmentInfo(name, seg.where, int(sizes.get(name, 0)), bool(time_dep), refreshed,
                               error, seg.description))  # fmt: skip
    return out


def members(store: Store, segment: str, limit: int | None = None) -> list[tuple[str, datetime]]:
    sql = f"SELECT profile_id, entered_at FROM ({current_members_sql(segment)}) ORDER BY entered_at, profile_id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [tuple(r) for r in store.execute(sql).fetchall()]


def history(store: Store, segment: str, profile_id: str | None = None) -> list[dict]:
    sql = ("SELECT profile_id, entered_at, entered_by, exited_at, exited_by FROM segment_membership "
           "WHERE segment = ?")  # fmt: skip
    params = [segment]
    if profile_id:
        sql += " AND profile_id = ?"
        params.append(profile_id)
    result = store.execute(sql + " ORDER BY entered_at, profile_id", params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def profile_segments(store: Store, profile_id: str) -> list[tuple[str, datetime]]:
    """The segments a profile is in now (for the 360° profile)."""
    return [tuple(r) for r in store.execute(
        "SELECT segment, entered_at FROM segment_membership WHERE profile_id = ? AND exited_at IS NULL "
        "ORDER BY segment", [profile_id]).fetchall()]  # fmt: skip


def members_sql(segment: str) -> str:
    """profile_id of the current members (for other modules: metrics per segment, exports)."""
    return f"SELECT profile_id FROM ({current_members_sql(segment)})"


# -- exports -----------------------------------------------------------------------------------


def export_sql(catalog: Catalog, segment: str, columns: list[str] | None,
               since: datetime | None = None) -> str:  # fmt: skip
    """Full: the current members with `columns`. Delta (`since`): every entry and exit after
    `since`, as (profile_id, change, changed_at, columns...)."""
    lit = "'" + segment.replace("'", "''") + "'"
    cols = [c for c in (columns or []) if c != "profile_id"]
    if since is None:
        ids = f"SELECT profile_id FROM ({current_members_sql(segment)})"
        base = f"SELECT profile_id, entered_at FROM ({current_members_sql(segment)})"
        order = "profile_id"
    else:
        stamp = f"TIMESTAMP '{since.isoformat(sep=' ')}'"
        base = f"""
            SELECT profile_id, 'entered' AS change, entered_at AS changed_at FROM segment_membership
            WHERE segment = {lit} AND entered_at > {stamp}
            UNION ALL
            SELECT profile_id, 'exited', exited_at FROM segment_membership
            WHERE segment = {lit} AND exited_at > {stamp}
        """  # fmt: skip
        ids = f"SELECT profile_id FROM ({base})"
        order = "changed_at, profile_id, change DESC"
    if not cols:
        return f"SELECT * FROM ({base}) ORDER BY {order}"
    rows = profile_rows_sql(catalog, ids, cols)
    return f"SELECT b.*, r.* EXCLUDE (profile_id) FROM ({base}) b LEFT JOIN ({rows}) r USING (profile_id) ORDER BY {order}"


def export(store: Store, catalog: Catalog, segment: str, out: Path, columns: list[str] | None = None,
           since: datetime | None = None) -> int:  # fmt: skip
    """Write a segment (full, or the delta since `since`) to a .csv or .parquet file."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: unsupported output type {suffix or '(none)'}; use .csv or .parquet")
    sql = export_sql(catalog, segment, columns, since)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fmt = "(FORMAT csv, HEADER true)" if suffix == ".csv" else "(FORMAT parquet)"
    cur = store.cursor()
    cur.execute(f"COPY ({sql}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' {fmt}")
    tmp.replace(out)  # never leave a half-written file under the real name
    return int(one(cur.execute(f"SELECT count(*) FROM ({sql})"))[0])
