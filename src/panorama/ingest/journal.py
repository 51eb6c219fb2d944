"""The ingestion journal: events the HTTP API has acknowledged that DuckDB may not hold yet.

A DuckDB commit costs ~10 ms of CPU whatever its size (measured on DuckDB 1.5: 100 rows
10.6 ms, 5,000 rows 74 ms, i.e. 106 vs 15 µs per row), so acknowledging each request only
after its own commit spends most of the server on commits. With the journal, the writer
acknowledges a group of requests once its rows are in an append-only file and fsynced
(`Journal.append`); a loader moves them into the log in large groups (whatever arrived while
the previous group loaded) and records in the same DuckDB transaction the sequence number of
the last record it loaded. On start-up the records after that number are loaded again
(`Journal.open`), so a crash between the two loses nothing and loads nothing twice.

Layout: a directory `<store file>.journal/` of segment files `<first sequence number>.seg`.
A record is `b"PJ1"`, a kind byte (`E`: an Arrow IPC stream of event rows, `D`: dead letters
as JSON), the payload length (u32), the sequence number (u64), the payload's CRC-32 (u32),
then the payload. The writer never appends to a segment after a failed write or a restart:
it starts a new one, so a torn record can only be the last of its segment, and replay skips
from there to the next segment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from panorama.ingest.log import DeadLetter

log = logging.getLogger("panorama.journal")

_MAGIC = b"PJ1"
_HEADER = struct.Struct("<3scIQI")  # magic, kind, length, sequence, crc32
EVENTS = b"E"
DEAD = b"D"
# A new segment once the current one is this large (a loaded segment is deleted whole).
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass
class Record:
    seq: int
    kind: bytes
    payload: bytes

    def events(self) -> pa.Table:
        return decode_events(self.payload)

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter(**item) for item in orjson.loads(self.payload)]


# Given explicitly: `pa.ipc.new_stream` otherwise reads two environment variables per call.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions()


def encode_events(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.RecordBatchStreamWriter(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_events(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()


@dataclass(frozen=True)
class EncodedEvents:
    """Event rows as a journal payload (`encode_events`), decoded only where they are loaded:
    a validation process's rows cross to the server encoded, and the writer journals them as
    they are (neither the event loop nor the writer decodes and re-encodes them)."""

    payload: bytes
    num_rows: int

    @classmethod
    def of(cls, table: pa.Table) -> EncodedEvents:
        return cls(encode_events(table), table.num_rows)

    def table(self) -> pa.Table:
        return decode_events(self.payload)


def encode_dead_letters(letters: list[DeadLetter]) -> bytes:
    return orjson.dumps([letter.__dict__ for letter in letters])


@dataclass
class _Segment:
    path: Path
    first: int
    last: int = 0  # the last sequence number in it (0: none yet)


@dataclass
class Journal:
    directory: Path
    segment_bytes: int = SEGMENT_BYTES
    _segments: list[_Segment] = field(default_factory=list)
    _fd: int | None = None
    _size: int = 0
    _next: int = 1

    @classmethod
    def beside(cls, store_path: Path) -> Journal:
        return cls(Path(str(store_path) + ".journal"))

    # -- start-up ------------------------------------------------------------------------------

    def open(self, loaded: int) -> list[Record]:
        """Read the segments; returns the records after `loaded` (the store's last loaded
        sequence number), in order. Writing goes to a new segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pending: list[Record] = []
        last = loaded
        for path in sorted(self.directory.glob("*.seg"), key=_first_of):
            segment = _Segment(path, _first_of(path))
            for record in _read(path):
                segment.last = record.seq
                last = max(last, record.seq)
                if record.seq > loaded:
                    pending.append(record)
            self._segments.append(segment)
        self._next = last + 1
        return pending

    # -- writing -------------------------------------------------------------------------------

    def append(self, items: list[tuple[bytes, bytes]]) -> int:
        """Write records (kind, payload) and fsync; returns the last sequence number. On an
        error nothing of this call counts (the caller answers it as failed) and the next
        call starts a new segment."""
        if self._fd is None or self._size >= self.segment_bytes:
            self._new_segment()
        parts = []
        seq = self._next
        for kind, payload in items:
            parts.append(_HEADER.pack(_MAGIC, kind, len(payload), seq, zlib.crc32(payload)))
            parts.append(payload)
            seq += 1
        data = b"".join(parts)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # short writes: regular files rarely do this
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
        except OSError:
            self._abandon_segment()
            raise
        self._size += len(data)
        self._next = seq
        self._segments[-1].last = seq - 1
        return seq - 1

    @property
    def last_seq(self) -> int:
        return self._next - 1

    def _new_segment(self) -> None:
        self._close_fd()
        path = self.directory / f"{self._next:020d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        _fsync_directory(self.directory)
        self._segments.append(_Segment(path, self._next))

    def _abandon_segment(self) -> None:
        """After a failed write: cut the torn tail if possible, and write on in a new segment."""
        # if this fails too, replay stops at the torn record and goes on with the next segment
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- after loading -------------------------------------------------------------------------

    def release(self, loaded: int) -> None:
        """Delete the segments whose every record is loaded (not the one being written)."""
        keep = []
        for i, segment in enumerate(self._segments):
            current = i == len(self._segments) - 1 and self._fd is not None
            if not current and segment.last <= loaded:
                try:
                    segment.path.unlink(missing_ok=True)
                except OSError:
                    log.warning("could not delete the loaded journal segment %s", segment.path)
                    keep.append(segment)
            else:
                keep.append(segment)
        self._segments = keep

    def close(self, loaded: int) -> None:
        """Close; with everything loaded, the journal is emptied."""
        self._close_fd()
        self.release(loaded)


def _first_of(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return 0


def _read(path: Path) -> Iterator[Record]:
    """The segment's complete records; stops at a torn or corrupt one (the end of what was
    ever acknowledged in it)."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, kind, length, seq, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if magic != _MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("journal segment %s: torn record at byte %d (never acknowledged); "
                        "skipping the rest of it", path.name, offset)  # fmt: skip
            return
        yield Record(seq, kind, payload)
        offset = start + length


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
