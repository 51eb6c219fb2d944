"""The HTTP ingestion path with `engine: spark`: events are accepted and stored as before, and
reach the Parquet log (partitioned by date and source) in micro-batches."""

from __future__ import annotations

import time
import uuid

import httpx
import pyarrow.dataset as ds
import pytest

from conftest import make_project, start_server

pytestmark = pytest.mark.xdist_group("scale_spark")


def _parquet_ids(path) -> list[str]:
    if not (path / "events").exists():
        return []
    table = ds.dataset(path / "events", format="parquet", partitioning="hive").to_table()
    return table.column("message_id").to_pylist()


def test_http_events_reach_the_parquet_log_in_micro_batches(tmp_path):
    from panorama.config import load_project
    from panorama.scale import log as plog
    from panorama.store import open_store

    keys = make_project(tmp_path, ("web", "ios"))
    with open(tmp_path / "panorama.yaml", "a", encoding="utf-8") as f:
        f.write("engine: spark\nspark:\n  log_path: parquet-log\n")
        f.write("  micro_batch_rows: 10\n  micro_batch_seconds: 0.3\n")
    root = tmp_path / "parquet-log"
    server = start_server(tmp_path, keys)
    sent = []
    try:
        for source in ("web", "ios"):
            batch = [{"type": "track", "userId": f"u{i}", "event": "Clicked", "messageId": str(uuid.uuid4()),
                      "properties": {"n": i}} for i in range(13)]  # fmt: skip
            sent += [m["messageId"] for m in batch]
            r = httpx.post(
                server.url + "/v1/batch", json={"batch": batch}, auth=(keys[source], ""), timeout=10
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"success": True}
        deadline = time.monotonic() + 15
        while sorted(_parquet_ids(root)) != sorted(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        # flushed by size or by time, while serving; the store's log as before
        assert sorted(_parquet_ids(root)) == sorted(sent)
        assert server.query("SELECT count(*) FROM events")[0][0] == len(sent)
    finally:
        server.stop()
    partitions = {
        (p.parent.parent.name.split("=")[0], p.parent.name)
        for p in (root / "events").rglob("*.parquet")
    }
    assert partitions == {("date", "source=web"), ("date", "source=ios")}
    # the Parquet log is caught up: a sync from the store finds nothing new
    project = load_project(tmp_path)
    with open_store(project.store_path) as store:
        assert plog.sync(store, root) == {"events": 0, "records": 0}
