"""Where the serving process's memory is: the process (RSS, anonymous and file-backed), the
Python heap (allocated blocks, objects the collector tracks), DuckDB's own accounting
(`duckdb_memory()` by tag, `pragma database_size`) and the two allocators under them: the
jemalloc DuckDB links (what it allocated, what it holds resident, freed pages included) and
glibc's malloc (Python's large objects, NumPy/pandas buffers: in use and free-but-held). Read by GET /api/v1/server/memory
and by `bench/soak.py`, which samples it under load to tell data growth from a leak."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import types
from typing import Any

from panorama.store import Store, one

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


def allocators() -> dict[str, float]:
    """MB held by the allocators (Linux, glibc and DuckDB's bundled jemalloc; empty elsewhere).

    `jemalloc_*`: DuckDB's allocator — `allocated` is live, `resident` what it keeps in RAM
    (dirty pages it has not returned yet included: `allocator_flush_threshold`).
    `malloc_*`: glibc — `in_use` live blocks, `free` freed but still held by its arenas."""
    out: dict[str, float] = {}
    try:
        import _duckdb  # the extension module, which exports its jemalloc's mallctl

        mallctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
        size = ctypes.c_size_t(8)
        epoch = ctypes.c_uint64(1)  # refreshes jemalloc's cached statistics
        mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), 8)
        for name in ("allocated", "active", "resident", "retained"):
            value, size = ctypes.c_size_t(0), ctypes.c_size_t(8)
            if (
                mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0)
                == 0
            ):
                out[f"jemalloc_{name}_mb"] = round(value.value / MB, 1)
    except (ImportError, OSError, AttributeError):
        pass
    try:

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        out["malloc_in_use_mb"] = round((info.uordblks + info.hblkhd) / MB, 1)
        out["malloc_free_mb"] = round(info.fordblks / MB, 1)
    except (OSError, AttributeError):
        pass
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        out["arrow_mb"] = round(pa.total_allocated_bytes() / MB, 1)
    return out


_CONTAINERS = (dict, list, set, frozenset, tuple)


def largest_containers(
    extra: dict[str, object] | None = None, limit: int = 8
) -> list[dict[str, Any]]:
    """The largest Python containers by length, to name the one that grows: the module-level
    ones of panorama's modules (and the containers held by their module-level objects), which
    `gc.freeze` at start-up hides from the collector, and the collector's tracked objects."""
    import collections

    found: dict[int, tuple[int, str]] = {}

    def note(obj: object, where: str) -> None:
        if isinstance(obj, (*_CONTAINERS, collections.deque)) and len(obj) >= 100:
            found.setdefault(id(obj), (len(obj), where))

    for name, module in list(sys.modules.items()):
        if not name.startswith("panorama") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            note(value, f"{name}.{attr}")
            inner = getattr(value, "__dict__", None)
            if isinstance(value, type | types.ModuleType) or callable(value):
                continue
            if isinstance(inner, dict):
                for key, item in list(inner.items()):
                    note(item, f"{name}.{attr}.{key}")
    for name, value in (extra or {}).items():
        for key, item in list(vars(value).items()):
            note(item, f"{name}.{key}")
    for obj in gc.get_objects():
        if type(obj) in (dict, list, set, collections.deque) and len(obj) >= 1000:
            found.setdefault(id(obj), (len(obj), f"<{type(obj).__name__}>"))
    top = sorted(found.values(), reverse=True)[:limit]
    return [{"where": where, "len": n} for n, where in top]


def duckdb_memory(store: Store) -> dict[str, Any]:
    """DuckDB's accounting: memory by tag (non-zero tags), the total, its limit, the file."""
    cur = store.cursor()
    tags = {tag: round(used / MB, 1)
            for tag, used, _ in cur.execute("SELECT * FROM duckdb_memory()").fetchall() if used}  # fmt: skip
    temp = one(cur.execute("SELECT sum(temporary_storage_bytes) FROM duckdb_memory()"))[0]
    size = cur.execute("PRAGMA database_size").fetchall()
    cols = [d[0] for d in cur.description]
    db = dict(zip(cols, size[0], strict=True)) if size else {}
    return {"total_mb": round(sum(tags.values()), 1), "by_tag_mb": tags,
            "temporary_mb": round((temp or 0) / MB, 1),
            "limit": db.get("memory_limit"), "database_size": db.get("database_size"),
            "wal_size": db.get("wal_size"), "used_blocks": db.get("used_blocks")}  # fmt: skip


def memory_report(store: Store) -> dict[str, Any]:
    return {"pid": os.getpid(), "process": process_memory(), "python": python_memory(),
            "duckdb": duckdb_memory(store), "allocators": allocators(),
            "containers": largest_containers({"store": store})}  # fmt: skip
