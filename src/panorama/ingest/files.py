"""Load configured sources (files and DB tables) into the log.

Each chunk of rows is validated in one SQL pass over string columns: the key must be
present, the timestamp must parse, numeric properties must be numbers, declared formats
must match. Good rows are appended (idempotently: by source + key + content for records,
by message id for events); bad rows go to dead letters with file, line, field and reason.
Each chunk commits on its own, so an interrupted run keeps what it loaded and a re-run
completes it without duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson

from panorama.config import Project, SourceConfig
from panorama.ingest import bulk, readers
from panorama.ingest.dedup import insert_new_events
from panorama.ingest.log import DeadLetter, append_dead_letters, append_events, events_table, utcnow
from panorama.ingest.readers import LINE, Chunk, ReadError
from panorama.ingest.segment import EVENT_COLUMNS, MessageError, normalize_message
from panorama.modules import optional_import
from panorama.store import Store, one
from panorama.store.schema import NUMERIC_PROPERTIES, PROMOTED_PROPERTIES

Progress = Callable[[int, int], None]  # (rows done, rows expected)
# Deleted people's identifiers (hashed tombstones): their rows are dropped before writing.
_guard = optional_import("panorama.privacy.guard")


class IngestError(Exception):
    """A source that cannot be loaded at all; the message names the file and the problem."""


@dataclass
class IngestResult:
    source: str
    file: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_date_format(fmt: str) -> bool:
    directives = {fmt[i + 1] for i in range(len(fmt) - 1) if fmt[i] == "%"}
    return not directives & set("HIMSfpzZ")


def _time_expr(column: str, fmt: str | None) -> str:
    col = _ident(column)
    if fmt:
        parsed = f"CAST(try_strptime(trim({col}), {_lit(fmt)}) AS TIMESTAMP)"
    else:
        parsed = (
            f"COALESCE(CAST(TRY_CAST(trim({col}) AS TIMESTAMPTZ) AS TIMESTAMP), "
            f"CASE WHEN regexp_full_match(trim({col}), '\\d{{9,10}}(\\.\\d+)?') "
            f"THEN make_timestamp(CAST(TRY_CAST(trim({col}) AS DOUBLE) * 1e6 AS BIGINT)) "
            f"WHEN regexp_full_match(trim({col}), '\\d{{12,13}}') "
            f"THEN make_timestamp(TRY_CAST(trim({col}) AS BIGINT) * 1000) END)"
        )
    return f"(CASE WHEN year({parsed}) BETWEEN 1900 AND 2200 THEN {parsed} END)"


def _formatted_expr(column: str, fmt: str) -> str:
    col = _ident(column)
    parsed = f"try_strptime(trim({col}), {_lit(fmt)})"
    out = "%Y-%m-%d" if _is_date_format(fmt) else "%Y-%m-%dT%H:%M:%S"
    return f"strftime(CAST({parsed} AS TIMESTAMP), {_lit(out)})"


@dataclass
class _Plan:
    """SQL for one source: a SELECT over the chunk computing checked, typed values."""

    select: str
    raw_row: str  # JSON of the row as read, for dead letters


def _plan(name: str, source: SourceConfig, columns: list[str], file: str) -> _Plan:
    """Build the validating SELECT over `_chunk` (string columns + __line)."""
    assert source.key and source.timestamp
    exprs: dict[str, str] = {}
    checks: list[tuple[str, str, str]] = []  # (condition for bad, field, reason expression)

    key = _ident(source.key)
    exprs["_key"] = f"trim({key})"
    checks.append((f"{key} IS NULL", source.key, _lit(f"key column '{source.key}' is empty")))

    ts_fmt = source.formats.get(source.timestamp)
    ts_col = _ident(source.timestamp)
    exprs["_ts"] = _time_expr(source.timestamp, ts_fmt)
    checks.append((f"{ts_col} IS NULL", source.timestamp,
                   _lit(f"timestamp column '{source.timestamp}' is empty")))  # fmt: skip
    expected = f"format {ts_fmt!r}" if ts_fmt else "ISO 8601 or epoch seconds"
    checks.append(
        ("_ts IS NULL", source.timestamp,
         f"{_lit(f'timestamp column {source.timestamp!r}: cannot parse ')} || ('''' || {ts_col} || '''') || "
         f"{_lit(f' (expected {expected})')}")
    )  # fmt: skip

    if source.event_column:
        ev = _ident(source.event_column)
        exprs["_event"] = f"trim({ev})"
        checks.append((f"{ev} IS NULL", source.event_column,
                       _lit(f"event column '{source.event_column}' is empty")))  # fmt: skip
    elif source.event:
        exprs["_event"] = _lit(source.event)

    def value_expr(column: str, kind: str, target: str) -> str:
        col = _ident(column)
        fmt = source.formats.get(column)
        if fmt:
            alias = f"_fmt_{len(exprs)}"
            exprs[alias] = _formatted_expr(column, fmt)
            checks.append(
                (f"{col} IS NOT NULL AND {alias} IS NULL", column,
                 f"{_lit(f'{kind} {target!r} (column {column!r}): ')} || ('''' || {col} || '''') || "
                 f"{_lit(f' does not match format {fmt!r}')}")
            )  # fmt: skip
            return alias
        if kind == "property" and target in NUMERIC_PROPERTIES:
            alias = f"_num_{len(exprs)}"
            exprs[alias] = f"TRY_CAST(replace(trim({col}), ',', '') AS DOUBLE)"
            checks.append(
                (f"{col} IS NOT NULL AND {alias} IS NULL", column,
                 f"{_lit(f'property {target!r} (column {column!r}): ')} || ('''' || {col} || '''') || "
                 f"{_lit(' is not a number')}")
            )  # fmt: skip
            return alias
        return f"trim({col})"

    attributes = {target: value_expr(col, "attribute", target) for col, target in source.attributes.items()}
    properties = {target: value_expr(col, "property", target) for col, target in source.properties.items()}
    used = set(source.columns())
    if source.kind == "events":  # unmapped columns travel as properties under their own names
        for col in columns:
            if col not in used and col != LINE and col not in properties:
                properties[col] = f"trim({_ident(col)})"

    ident_items = ", ".join(
        f"{{'type': {_lit(kind)}, 'value': trim({_ident(col)})}}" for col, kind in source.identifiers.items()
    )
    exprs["_identifiers"] = (
        f"list_filter([{ident_items}], i -> i.value IS NOT NULL AND i.value <> '')" if ident_items
        else "CAST([] AS STRUCT(type VARCHAR, value VARCHAR)[])"
    )  # fmt: skip

    def json_object(mapping: dict[str, str]) -> str:
        if not mapping:
            return "NULL"
        return "json_object(" + ", ".join(f"{_lit(k)}, {v}" for k, v in mapping.items()) + ")"

    exprs["_attributes"] = json_object(attributes)
    exprs["_properties"] = json_object(properties)
    raw_row = json_object({c: _ident(c) for c in columns if c != LINE})
    if source.kind == "records":
        exprs["_data"] = raw_row
    for target in PROMOTED_PROPERTIES:
        exprs[f"_p_{target}"] = properties.get(target, "NULL")
    for kind in ("user_id", "anonymous_id"):
        cols = [c for c, k in source.identifiers.items() if k == kind]
        exprs[f"_{kind}"] = f"trim({_ident(cols[0])})" if cols else "NULL"

    reason = "CASE " + " ".join(f"WHEN {cond} THEN {why}" for cond, _, why in checks) + " END"
    field = "CASE " + " ".join(f"WHEN {cond} THEN {_lit(f)}" for cond, f, _ in checks) + " END"
    # Checks refer to computed aliases, so compute in a subquery first.
    inner = ", ".join(f"{expr} AS {alias}" for alias, expr in exprs.items())
    select = (
        f"SELECT *, {reason} AS _reason, {field} AS _field FROM "
        f"(SELECT *, {inner} FROM _chunk)"
    )
    return _Plan(select, raw_row)


def _insert_records(cur: duckdb.DuckDBPyConnection, name: str, file: str, now) -> int:
    return one(cur.execute(
        f"""
        INSERT OR IGNORE INTO records
            (source, record_id, row_hash, ts, ingested_at, identifiers, attributes, data, file, line)
        SELECT {_lit(name)}, _key, md5(CAST(_data AS VARCHAR)), _ts, ?, _identifiers,
               _attributes, _data, {_lit(file)}, {LINE}
        FROM _checked WHERE _reason IS NULL
        """,
        [now],
    ))[0]


def _insert_events(cur: duckdb.DuckDBPyConnection, name: str, file: str, now) -> int:
    promoted = ", ".join(PROMOTED_PROPERTIES)
    promoted_values = ", ".join(f"_p_{p} AS {p}" for p in PROMOTED_PROPERTIES)
    columns = ("message_id, type, event, source, user_id, anonymous_id, timestamp, original_timestamp, "
               f"received_at, identifiers, traits, properties, {promoted}, file, line")  # fmt: skip
    rows = f"""
        SELECT {_lit(name + ":")} || _key AS message_id, 'track' AS type, _event AS event,
               {_lit(name)} AS source, _user_id AS user_id, _anonymous_id AS anonymous_id,
               _ts AS timestamp, _ts AS original_timestamp, $now AS received_at,
               _identifiers AS identifiers, _attributes AS traits, _properties AS properties,
               {promoted_values}, {_lit(file)} AS file, {LINE} AS line
        FROM _checked WHERE _reason IS NULL
    """
    return insert_new_events(cur, rows, columns, order_by="line", params={"now": now})


def _dead_letter_rows(cur: duckdb.DuckDBPyConnection, plan: _Plan, name: str, file: str) -> list[DeadLetter]:
    rows = cur.execute(
        f"SELECT {LINE}, _field, _reason, CAST({plan.raw_row} AS VARCHAR) FROM _checked "
        f"WHERE _reason IS NOT NULL ORDER BY {LINE}"
    ).fetchall()
    return [DeadLetter(name, reason, raw, file, line, field) for line, field, reason, raw in rows]


def _bad_rows(name: str, file: str, chunk: Chunk) -> list[DeadLetter]:
    return [DeadLetter(name, b.reason, b.raw, file, b.line, b.field) for b in chunk.bad]


class _Loader:
    """Loads chunks of one source; `failed` collects the lines rejected this time."""

    def __init__(self, store: Store, name: str, source: SourceConfig | None, file: str | None,
                 record_dead: bool = True):  # fmt: skip
        self.store = store
        self.name = name
        self.source = source
        self.file = file
        self.record_dead = record_dead
        self.failed: set[int] = set()
        self.result = IngestResult(name, file or "")

    def _reject(self, tx: duckdb.DuckDBPyConnection, letters: list[DeadLetter]) -> None:
        self.failed.update(d.line for d in letters if d.line is not None)
        if self.record_dead:
            append_dead_letters(tx, letters)

    def tabular(self, chunks: Iterator[Chunk], progress: Progress | None, expected: int) -> None:
        plan: _Plan | None = None
        for chunk in chunks:
            columns = chunk.table.column_names
            if plan is None:
                assert self.source is not None
                self._check_columns(columns)
                plan = _plan(self.name, self.source, columns, self.file)
            now = utcnow()
            good = chunk.table.num_rows
            with self.store.transaction() as tx:
                tx.register("_chunk", chunk.table)
                tx.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS {plan.select}")
                if _guard is not None:
                    good -= _guard.screen_checked(tx, self.store)
                insert = _insert_records if self.source.kind == "records" else _insert_events
                loaded = insert(tx, self.name, self.file, now)
                bad = _dead_letter_rows(tx, plan, self.name, self.file) + _bad_rows(self.name, self.file, chunk)
                self._reject(tx, bad)
                tx.execute("DROP TABLE _checked")
                tx.unregister("_chunk")
            rejected_here = len(bad)
            self._count(good + len(chunk.bad), loaded, good - (rejected_here - len(chunk.bad)) - loaded,
                        rejected_here)  # fmt: skip
            if progress:
                progress(self.result.rows_read, expected)

    def segment_lines(self, chunks: Iterator[readers.LineChunk], progress: Progress | None, expected: int) -> None:
        """A JSON-lines file of Segment messages in bulk (see ingest/bulk.py): the plain
        messages in one SQL pass per chunk, the others through `normalize_message`."""
        stage = None
        for chunk in chunks:
            if stage is None:
                stage = bulk.stage_sql(self.name)
            now = utcnow()
            with self.store.transaction() as tx:
                tx.register("_seg_lines", chunk.table)
                tx.execute(f"CREATE OR REPLACE TEMP TABLE _seg_checked AS {stage}", {"now": now})
                tx.unregister("_seg_lines")
                slow_lines = [r[0] for r in tx.execute(
                    "SELECT line FROM _seg_checked WHERE NOT _eligible ORDER BY line").fetchall()]  # fmt: skip
                if slow_lines:
                    tx.execute("DELETE FROM _seg_checked WHERE NOT _eligible")
                raws = dict(zip(chunk.lines, chunk.raw, strict=True)) if slow_lines else {}
                slow = [(n, readers.parse_json_line(n, raws[n])) for n in slow_lines]
                slow += [(b.line, b) for b in chunk.bad]
                rows, bad = self._messages(sorted(slow, key=lambda item: item[0]), now)
                if _guard is not None:
                    _guard.screen_checked(tx, self.store, "_seg_checked", "_screen")
                    rows, _ = _guard.screen_rows(self.store, rows)
                    bad = _guard.screen_raw(self.store, bad, _guard.dead_letter_pairs)
                fast = one(tx.execute("SELECT count(*) FROM _seg_checked"))[0]
                columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
                fast_rows = f"SELECT * EXCLUDE (_eligible, _screen), {_lit(self.file)} AS file FROM _seg_checked"
                if rows:  # in line order, so that a message id's first line wins as on the Python path
                    tx.register("_seg_slow", events_table(rows))
                    fast_rows = f"{fast_rows} UNION ALL BY NAME SELECT * FROM _seg_slow"
                loaded = insert_new_events(tx, fast_rows, columns, order_by="line")
                if rows:
                    tx.unregister("_seg_slow")
                tx.execute("DROP TABLE _seg_checked")
                self._reject(tx, bad)
            good = fast + len(rows)
            self._count(len(chunk.lines) + len(chunk.bad), loaded, good - loaded, len(bad))
            if progress:
                progress(self.result.rows_read, expected)

    def _messages(self, batch, now) -> tuple[list[dict], list[DeadLetter]]:
        """Segment messages → (log rows, dead letters), one `normalize_message` each."""
        rows, bad = [], []
        for line, obj in batch:
            if isinstance(obj, readers.BadRow):
                bad.append(DeadLetter(self.name, obj.reason, obj.raw, self.file, line, obj.field))
                continue
            try:
                row = normalize_message(obj, source=self.name, received_at=now)
            except MessageError as exc:
                raw = orjson.dumps(obj).decode()[:4000]
                bad.append(DeadLetter(self.name, str(exc), raw, self.file, line, exc.field))
                continue
            row["file"], row["line"] = self.file, line
            rows.append(row)
        return rows, bad

    def segment(self, batches, progress: Progress | None, expected: int, received_at=None) -> None:
        for batch in batches:
            rows, bad = self._messages(batch, received_at or utcnow())
            if _guard is not None:
                rows, _ = _guard.screen_rows(self.store, rows)
                bad = _guard.screen_raw(self.store, bad, _guard.dead_letter_pairs)
            with self.store.transaction() as tx:
                loaded = append_events(tx, events_table(rows))
                self._reject(tx, bad)
            self._count(len(batch), loaded, len(rows) - loaded, len(bad))
            if progress:
                progress(self.result.rows_read, expected)

    def _check_columns(self, columns: list[str]) -> None:
        assert self.source is not None
        missing = [c for c in self.source.columns() if c not in columns]
        if missing:
            available = ", ".join(c for c in columns if c != LINE)
            raise IngestError(
                f"{self.file}: column(s) {', '.join(repr(c) for c in missing)} named in the config of "
                f"source '{self.name}' are not in the file; its columns are: {available}"
            )

    def _count(self, read: int, loaded: int, duplicates: int, rejected: int) -> None:
        self.result.rows_read += read
        self.result.loaded += loaded
        self.result.duplicates += duplicates
        self.result.rejected += rejected


def _display_path(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


def ingest_source(store: Store, project: Project, name: str, progress: Progress | None = None) -> IngestResult:
    """Load one configured source. Raises IngestError if the source cannot be read at all."""
    if name not in project.config.sources:
        known = ", ".join(project.config.sources) or "(none configured)"
        raise IngestError(f"unknown source {name!r}; configured sources: {known}")
    source = project.config.sources[name]
    started = time.perf_counter()
    if source.path is not None:
        path = project.source_path(source)
        file = _display_path(project, path)
        if not path.exists():
            raise IngestError(f"{file}: file not found (source '{name}', key `path`)")
    else:
        path, file = None, f"table:{source.table}"
    loader = _Loader(store, name, source, file)
    run_id = store.scalar(
        "INSERT INTO ingest_runs (source, file, started_at) VALUES (?, ?, ?) RETURNING id",
        [name, file, utcnow()],
    )
    try:
        _load(loader, project, source, path, progress)
    except ReadError as exc:
        raise IngestError(str(exc).replace(str(path), file) if path else str(exc)) from None
    finally:
        r = loader.result
        store.execute(
            "UPDATE ingest_runs SET finished_at = ?, rows_read = ?, rows_loaded = ?, "
            "rows_duplicate = ?, rows_rejected = ? WHERE id = ?",
            [utcnow(), r.rows_read, r.loaded, r.duplicates, r.rejected, run_id],
        )
    loader.result.seconds = time.perf_counter() - started
    return loader.result


def _load(loader: _Loader, project: Project, source: SourceConfig, path: Path | None, progress) -> None:
    if path is None:
        database = (project.root / source.database).resolve() if source.database else None
        chunks = readers.read_table(database, source.table, loader.store.cursor())
        loader.tabular(chunks, progress, 0)
        return
    suffix = path.suffix.lower()
    expected = readers.count_lines(path) if suffix != ".parquet" else 0
    if source.kind == "segment":
        if suffix in (".csv", ".tsv", ".parquet"):
            raise IngestError(f"{loader.file}: a segment source must be JSON lines (.jsonl) or .json")
        if suffix == ".json":
            loader.segment(readers.read_json_array(path), progress, expected)
        else:
            loader.segment_lines(readers.read_lines(path), progress, expected)
    elif suffix in (".csv", ".tsv"):
        loader.tabular(readers.read_csv(path, source.delimiter), progress, max(expected - 1, 0))
    elif suffix == ".parquet":
        loader.tabular(readers.read_parquet(path), progress, 0)
    else:
        reader = readers.read_json_array if suffix == ".json" else readers.read_json_lines
        columns = list(dict.fromkeys([*source.columns(), *readers.json_columns(path)]))
        loader.tabular((readers.objects_to_chunk(b, columns) for b in reader(path)), progress, expected)


@dataclass
class ReplayResult:
    replayed: int = 0
    still_failing: int = 0


def replay_dead_letters(store: Store, project: Project, source: str | None = None) -> ReplayResult:
    """Retry unreplayed dead letters with the current config; the ones that load are marked
    replayed, the others stay. Rows that could not be read at all (a CSV line with the
    wrong number of fields) cannot be replayed and stay too."""
    where = "replayed_at IS NULL" + (" AND source = ?" if source else "")
    letters = store.execute(
        f"SELECT id, source, file, line, raw, received_at FROM dead_letters WHERE {where} ORDER BY id",
        [source] if source else None,
    ).fetchall()
    groups: dict[tuple, list] = {}
    for letter in letters:
        groups.setdefault((letter[1], letter[2]), []).append(letter)
    result = ReplayResult()
    for (name, file), group in groups.items():
        config = project.config.sources.get(name)
        loader = _Loader(store, name, config, file, record_dead=False)
        batch: list[tuple[int, dict | readers.BadRow]] = []
        ids: dict[int, int] = {}
        for letter_id, _, _, line, raw, _ in group:
            key = line if line is not None else -letter_id
            try:
                obj = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                result.still_failing += 1
                continue
            batch.append((key, obj))
            ids[key] = letter_id
        if not batch:
            continue
        if config is None or config.kind == "segment":
            loader.segment([batch], None, 0, received_at=group[0][5])
        else:
            columns = list(dict.fromkeys(k for _, obj in batch for k in obj))
            try:
                loader.tabular(iter([readers.objects_to_chunk(batch, columns)]), None, 0)
            except IngestError:
                result.still_failing += len(batch)
                continue
        done = [letter_id for key, letter_id in ids.items() if key not in loader.failed]
        if done:
            store.execute(
                f"UPDATE dead_letters SET replayed_at = ? WHERE id IN ({', '.join(map(str, done))})",
                [utcnow()],
            )
        result.replayed += len(done)
        result.still_failing += len(ids) - len(done)
    return result
