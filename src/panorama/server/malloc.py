"""glibc's allocator in a long-running server.

A soak (bench/soak.py, docs/operations.md) showed the server's RSS rising ~12-20 MB/min for
a quarter of an hour while Python's objects and DuckDB's own accounting stayed flat: glibc
keeps memory that threads freed in per-thread arenas (up to 8 per core) and returns it to
the system only at the top of a heap. Two remedies, both no-ops where glibc is not the C
library: fewer arenas (`mallopt(M_ARENA_MAX)`, the runtime form of MALLOC_ARENA_MAX) set
before the server starts its threads, and `malloc_trim(0)` now and then, which hands the
free pages of every arena back.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

log = logging.getLogger("panorama.server")

_M_ARENA_MAX = -8  # from glibc's malloc.h


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int) -> bool:
    """At most `count` malloc arenas from now on (call before starting threads)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, count))


def trim() -> bool:
    """Return free memory of every arena to the system; True when some was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


class Trimmer:
    """Calls `trim()` every `seconds` in a daemon thread (a few ms each time)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.runs = 0
        self.last_ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="panorama-malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        if _libc() is not None:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            started = time.perf_counter()
            trim()
            self.runs += 1
            self.last_ms = (time.perf_counter() - started) * 1000

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
