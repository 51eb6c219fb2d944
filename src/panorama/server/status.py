"""Where the serving process's memory is: the process (RSS, anonymous and file-backed), the
Python heap (allocated blocks, objects the collector tracks) and DuckDB's own accounting
(`duckdb_memory()` by tag, `pragma database_size`). Read by GET /api/v1/server/memory
and by `bench/soak.py`, which samples it under load to tell data growth from a leak."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from panorama.store import Store

MB = 1024 * 1024


def process_memory(pid: int | None = None) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of a process in MB, from /proc (Linux; empty elsewhere)."""
    wanted = {"VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb",
              "VmHWM": "peak_rss_mb"}  # fmt: skip
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in wanted:
                    out[wanted[name]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def python_memory() -> dict[str, int]:
    """The Python heap without tracemalloc: pymalloc blocks in use, objects the collector
    tracks (outside those frozen at start-up) and the frozen ones."""
    return {"allocated_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
            "gc_frozen": gc.get_freeze_count()}  # fmt: skip


def duckdb_memory(store: Store) -> dict[str, Any]:
    """DuckDB's accounting: memory by tag (non-zero tags), the total, its limit, the file."""
    cur = store.cursor()
    tags = {tag: round(used / MB, 1)
            for tag, used, _ in cur.execute("SELECT * FROM duckdb_memory()").fetchall() if used}  # fmt: skip
    temp = cur.execute("SELECT sum(temporary_storage_bytes) FROM duckdb_memory()").fetchone()[0]
    size = cur.execute("PRAGMA database_size").fetchall()
    cols = [d[0] for d in cur.description]
    db = dict(zip(cols, size[0], strict=True)) if size else {}
    return {"total_mb": round(sum(tags.values()), 1), "by_tag_mb": tags,
            "temporary_mb": round((temp or 0) / MB, 1),
            "limit": db.get("memory_limit"), "database_size": db.get("database_size"),
            "wal_size": db.get("wal_size"), "used_blocks": db.get("used_blocks")}  # fmt: skip


def memory_report(store: Store) -> dict[str, Any]:
    return {"pid": os.getpid(), "process": process_memory(), "python": python_memory(),
            "duckdb": duckdb_memory(store)}  # fmt: skip
