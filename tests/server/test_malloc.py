"""The server's allocator settings (panorama.server.malloc) on this glibc system."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from panorama.server import malloc


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_trim_hands_freed_heap_memory_back_on_glibc():
    assert malloc.limit_arenas(2) is True
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    big, small = [], []
    for _ in range(4000):  # ~128 MB of 32 KB blocks, each followed by a block kept in use
        block = libc.malloc(32 * 1024)
        ctypes.memset(block, 1, 32 * 1024)
        big.append(block)
        small.append(libc.malloc(64))
    for block in big:
        libc.free(block)
    freed = _rss_kb()  # the free blocks sit between used ones: glibc keeps them
    assert malloc.trim() is True
    trimmed = _rss_kb()
    for block in small:
        libc.free(block)
    assert trimmed < freed - 50_000, (freed, trimmed)  # most of the 128 MB went back


def test_trimmer_runs_in_the_background_and_stops():
    trimmer = malloc.Trimmer(0.05).start()
    deadline = time.monotonic() + 5
    while trimmer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    trimmer.stop()
    assert trimmer.runs >= 2
    runs = trimmer.runs
    time.sleep(0.2)
    assert trimmer.runs == runs  # stopped
