"""The server's allocator settings (panorama.server.malloc) on this glibc system."""

from __future__ import annotations

import subprocess
import sys
import time

from panorama.server import malloc

_TRIM_CHECK = """
import ctypes
from pathlib import Path
from panorama.server import malloc

def rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

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
freed = rss_kb()  # the free blocks sit between used ones: glibc keeps them
assert malloc.trim() is True
print(freed, rss_kb())
"""


def test_trim_hands_freed_heap_memory_back_on_glibc():
    # In a fresh interpreter: in a test worker, earlier tests' free heap decides where the
    # blocks go and how much RSS they add.
    out = subprocess.run(
        [sys.executable, "-c", _TRIM_CHECK], capture_output=True, text=True, check=True
    )
    freed, trimmed = map(int, out.stdout.split())
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
