"""GET /api/v1/server/memory: the serving process's memory as bench/soak.py samples it."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.xdist_group("ui")


def test_memory_report_reads_the_process_python_and_duckdb(ui_server):
    r = ui_server.api("admin").get("/api/v1/server/memory")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pid"] == os.getpid()  # the test server runs in this process
    process = body["process"]
    assert 0 < process["rss_anon_mb"] < process["rss_mb"] <= process["peak_rss_mb"]
    assert body["python"]["allocated_blocks"] > 0 and body["python"]["gc_objects"] > 0
    duckdb = body["duckdb"]
    # the store's tables are open: DuckDB accounts for them, within its limit
    assert duckdb["by_tag_mb"] and all(v > 0 for v in duckdb["by_tag_mb"].values())
    assert duckdb["total_mb"] == pytest.approx(sum(duckdb["by_tag_mb"].values()), abs=0.1)
    assert duckdb["limit"].endswith("B") and duckdb["database_size"].endswith("B")
    # DuckDB allocates from its bundled jemalloc: what it holds covers what DuckDB accounts for
    alloc = body["allocators"]
    assert alloc["jemalloc_resident_mb"] >= alloc["jemalloc_allocated_mb"] > 0
    assert alloc["malloc_in_use_mb"] > 0 and alloc["malloc_free_mb"] >= 0
    # the largest Python containers, named by where they live (a module-level cache would show)
    assert all(c["len"] >= 100 and c["where"] for c in body["containers"])


def test_memory_report_needs_sources_view(ui_server):
    assert ui_server.api("analyst").get("/api/v1/server/memory").status_code == 200
    assert ui_server.api("marketing").get("/api/v1/server/memory").status_code == 403
