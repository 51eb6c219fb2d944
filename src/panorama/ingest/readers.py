"""Read source files in chunks of string columns, keeping each row's line (or row) number.

Every reader yields `Chunk`s: a pyarrow table whose columns are all strings (the values as
they appear in the file, '' read as null) plus `__line`, the 1-based line in the file where
the row starts (for Parquet and DB tables: the 1-based row number). Rows that cannot be read
at all (a CSV row with the wrong number of fields, a JSON line that does not parse) come
out as `BadRow`s and never stop the rest of the file.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CHUNK_ROWS = 100_000
LINE = "__line"


class ReadError(Exception):
    """The file as a whole cannot be read (missing, unreadable, wrong header)."""


@dataclass
class BadRow:
    line: int
    reason: str
    raw: str
    field: str | None = None


@dataclass
class Chunk:
    table: pa.Table
    bad: list[BadRow] = field(default_factory=list)


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _blank_to_null(array: pa.Array) -> pa.Array:
    blank = pc.equal(pc.utf8_trim_whitespace(array), "")
    return pc.if_else(blank, pa.scalar(None, pa.string()), array)


def _table(columns: list[str], rows: list, lines: list[int]) -> pa.Table:
    """Rows of strings (or None) → a table of string columns, blanks as nulls, plus __line."""
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = {
        name: _blank_to_null(pa.array(values, pa.string()))
        for name, values in zip(columns, transposed, strict=True)
    }
    arrays[LINE] = pa.array(lines, pa.int64())
    return pa.table(arrays)


def _is_utf8(row: list[str]) -> bool:
    try:
        "".join(row).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(raw: str) -> str:
    """A line read with surrogateescape as storable text (bytes that are not UTF-8 become U+FFFD)."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_FAST_BLOCK = 32 << 20  # bytes of CSV parsed at a time by the bulk reader


def _plain_header(first: bytes, delimiter: str) -> list[str] | None:
    """The header of a CSV whose first line has no quotes and no CR, as csv.reader reads it;
    None when the line is not that simple (then the csv module reads the whole file)."""
    if not first.endswith(b"\n") or b'"' in first or b"\r" in first or not first.strip():
        return None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return text[:-1].split(delimiter)


def _plain_block(block: bytes, header: list[str], delimiter: str, first_line: int) -> Chunk | None:
    """A block of whole CSV lines parsed by Arrow in bulk, when every line is plain: no quote,
    no CR, no blank line, valid UTF-8, the header's number of fields. None otherwise (the
    caller reads on with the csv module, which handles — and rejects — the rest by line)."""
    import pyarrow.csv as pacsv

    if b'"' in block or b"\r" in block or b"\n\n" in block or block.startswith(b"\n"):
        return None
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    if block.count(delimiter.encode()) != (len(header) - 1) * lines:
        return None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(block),
            read_options=pacsv.ReadOptions(column_names=header),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                              newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )  # fmt: skip
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_rows != lines:
        return None
    arrays = {name: _blank_to_null(table.column(i).combine_chunks()) for i, name in enumerate(header)}
    arrays[LINE] = pa.array(range(first_line, first_line + lines), pa.int64())
    return Chunk(pa.table(arrays))


def read_csv(path: Path, delimiter: str | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """CSV in chunks. Blocks of plain lines (no quotes, every row complete) are parsed by
    Arrow in bulk; from the first block that is not plain on, the csv module reads row by
    row — the same rows, lines and rejections either way."""
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    offset, line = 0, 1
    if len(delimiter) == 1:
        try:
            raw = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise ReadError(f"{path}: cannot open: {exc.strerror}") from None
        with raw:
            header = _plain_header(raw.readline(), delimiter)
            plain = header is not None and len(set(header)) == len(header) and all(h == h.strip() for h in header)
            if plain:
                assert header is not None
                offset, line = raw.tell(), 2
                while True:
                    block = raw.read(_FAST_BLOCK)
                    if not block:
                        return
                    if not block.endswith(b"\n"):
                        block += raw.readline()
                    chunk = _plain_block(block, header, delimiter, line)
                    if chunk is None:
                        break
                    yield chunk
                    offset += len(block)
                    line += chunk.table.num_rows
    yield from _read_csv_rows(path, delimiter, chunk_rows, offset, line)


def _read_csv_rows(path: Path, delimiter: str, chunk_rows: int, offset: int = 0, line: int = 1) -> Iterator[Chunk]:
    """The csv module's reading, from the start or from `offset` (a line start after the
    header, whose number is `line`)."""
    try:
        # surrogateescape: a row with bytes that are not UTF-8 is rejected alone, not the file
        handle = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ReadError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise ReadError(f"{path}: the file is empty (no header line)") from None
        except csv.Error as exc:
            raise ReadError(f"{path}: line 1: cannot read the header: {exc}") from None
        header = [h.strip() for h in header]
        if not _is_utf8(header):
            raise ReadError(f"{path}: line 1: the header is not valid UTF-8 text")
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise ReadError(f"{path}: line 1: duplicate column name(s) {duplicates}")
        width = len(header)
        skipped = 0
        if offset:  # resume where the bulk reader stopped
            handle.seek(offset)
            reader = csv.reader(handle, delimiter=delimiter)
            skipped = line - 1
        rows: list[list[str | None]] = []
        lines: list[int] = []
        bad: list[BadRow] = []
        last_line = reader.line_num + skipped
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                bad.append(BadRow(last_line + 1, f"malformed CSV: {exc}", ""))
                last_line = reader.line_num + skipped
                continue
            start = last_line + 1
            last_line = reader.line_num + skipped
            if not row:
                continue  # blank line
            if len(row) != width:
                bad.append(
                    BadRow(start, f"expected {width} fields as in the header, found {len(row)}",
                           _text(delimiter.join(row)))
                )
                continue
            if not "".join(row).isascii() and not _is_utf8(row):
                bad.append(BadRow(start, "not valid UTF-8 text", _text(delimiter.join(row))))
                continue
            rows.append(row)
            lines.append(start)
            if len(rows) >= chunk_rows:
                yield Chunk(_table(header, rows, lines), bad)
                rows, lines, bad = [], [], []
        if rows or bad:
            yield Chunk(_table(header, rows, lines), bad)


def parse_json_line(number: int, raw: bytes) -> dict | BadRow:
    """One line of a JSON-lines file (as read, with its newline): the object, or why not."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        return BadRow(number, f"invalid JSON: {exc}", text[:2000])
    if isinstance(obj, dict):
        return obj
    return BadRow(number, "expected a JSON object", raw.decode("utf-8", "replace")[:2000])


def read_json_lines(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[tuple[int, dict | BadRow]]]:
    """JSON-lines: yields lists of (line, parsed object) or (line, BadRow)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ReadError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        batch: list[tuple[int, dict | BadRow]] = []
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            batch.append((number, parse_json_line(number, raw)))
            if len(batch) >= chunk_rows:
                yield batch
                batch = []
        if batch:
            yield batch


@dataclass
class LineChunk:
    """Lines of a JSON-lines file, unparsed: `table` holds (__line, raw) for the lines that are
    UTF-8 text; `bad` the lines that are not (as `parse_json_line` rejects them)."""

    table: pa.Table
    lines: list[int]
    raw: list[bytes]
    bad: list[BadRow] = field(default_factory=list)


def _line_chunk(lines: list[int], raw: list[bytes]) -> LineChunk:
    bad: list[BadRow] = []
    try:
        text = pa.array(raw, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # some line is not UTF-8: those are rejected as invalid JSON
        keep = []
        for i, b in enumerate(raw):
            try:
                b.decode("utf-8")
                keep.append(i)
            except UnicodeDecodeError:
                bad.append(parse_json_line(lines[i], b))  # type: ignore[arg-type]
        lines, raw = [lines[i] for i in keep], [raw[i] for i in keep]
        text = pa.array(raw, pa.binary()).cast(pa.string())
    table = pa.table({LINE: pa.array(lines, pa.int64()), "raw": text})
    return LineChunk(table, lines, raw, bad)


def read_lines(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[LineChunk]:
    """A JSON-lines file in chunks of raw lines (blank lines skipped), for bulk parsing."""
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ReadError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        lines: list[int] = []
        raw: list[bytes] = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            lines.append(number)
            raw.append(line)
            if len(raw) >= chunk_rows:
                yield _line_chunk(lines, raw)
                lines, raw = [], []
        if raw:
            yield _line_chunk(lines, raw)


def read_json_array(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[tuple[int, dict | BadRow]]]:
    """A .json file holding one array of objects (or one object); rows numbered from 1."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ReadError(f"{path}: cannot open: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ReadError(f"{path}: invalid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    for start in range(0, len(items), chunk_rows):
        batch: list[tuple[int, dict | BadRow]] = []
        for number, obj in enumerate(items[start : start + chunk_rows], start=start + 1):
            if isinstance(obj, dict):
                batch.append((number, obj))
            else:
                batch.append((number, BadRow(number, "expected a JSON object", orjson.dumps(obj).decode()[:2000])))
        yield batch


def objects_to_chunk(batch: list[tuple[int, dict | BadRow]], columns: list[str]) -> Chunk:
    """Flatten JSON objects into string columns (nested values kept as JSON text)."""
    rows, lines, bad = [], [], []
    for line, obj in batch:
        if isinstance(obj, BadRow):
            bad.append(obj)
            continue
        rows.append([_as_text(obj.get(c)) for c in columns])
        lines.append(line)
    return Chunk(_table(columns, rows, lines), bad)


def json_columns(path: Path) -> list[str]:
    """Every key that appears in the first rows of a JSON(-lines) file, in first-seen order."""
    reader = read_json_array if path.suffix.lower() == ".json" else read_json_lines
    columns: list[str] = []
    for batch in reader(path, chunk_rows=1000):
        for _, obj in batch:
            if isinstance(obj, dict):
                columns.extend(k for k in obj if k not in columns)
        break
    return columns


def read_parquet(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read Parquet: {exc}") from None
    offset = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        columns = {}
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            values = column.to_pylist()
            columns[name] = pa.array([_as_text(v) for v in values], pa.string())
        columns[LINE] = pa.array(range(offset + 1, offset + batch.num_rows + 1), pa.int64())
        offset += batch.num_rows
        yield Chunk(pa.table(columns))


def read_table(database: Path | None, table: str, store_con, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """A table in the project's store, in another DuckDB file, or in a SQLite file."""
    if database is not None and database.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        try:
            con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            cur = con.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - a configured name
        except sqlite3.Error as exc:
            raise ReadError(f"{database}: table {table!r}: {exc}") from None
        names = [d[0] for d in cur.description]
        offset = 0
        while rows := cur.fetchmany(chunk_rows):
            text_rows = [[_as_text(v) for v in row] for row in rows]
            yield Chunk(_table(names, text_rows, list(range(offset + 1, offset + len(rows) + 1))))
            offset += len(rows)
        con.close()
        return
    import duckdb

    con = duckdb.connect(str(database), read_only=True) if database is not None else store_con
    try:
        reader = con.execute(f"SELECT * FROM {table}").fetch_record_batch(chunk_rows)
    except duckdb.Error as exc:
        raise ReadError(f"table {table!r}: {exc}") from None
    offset = 0
    for batch in reader:
        columns = {
            name: pa.array([_as_text(v) for v in col.to_pylist()], pa.string())
            for name, col in zip(batch.schema.names, batch.columns, strict=True)
        }
        columns[LINE] = pa.array(range(offset + 1, offset + batch.num_rows + 1), pa.int64())
        offset += batch.num_rows
        yield Chunk(pa.table(columns))


def count_lines(path: Path) -> int:
    """Newlines in a file (a fast estimate of its rows, for progress bars)."""
    count = 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                count += block.count(b"\n")
    except OSError:
        return 0
    return count


__all__ = [
    "LINE",
    "BadRow",
    "Chunk",
    "ReadError",
    "count_lines",
    "json_columns",
    "objects_to_chunk",
    "read_csv",
    "read_json_array",
    "read_json_lines",
    "read_lines",
    "parse_json_line",
    "LineChunk",
    "read_parquet",
    "read_table",
]
