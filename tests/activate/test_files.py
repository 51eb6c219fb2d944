"""File destinations: a segment to CSV (full) and Parquet (delta since the previous export),
from the CLI and on a schedule in the running server."""

from __future__ import annotations

import time
from datetime import timedelta

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from typer.testing import CliRunner

from activate.helpers import sdk_client, wait_until, write_project
from conftest import make_project, start_server
from panorama.cli import app
from panorama.config import load_project
from panorama.ingest.log import append_events, utcnow
from panorama.ingest.segment import normalize_message
from panorama.store import open_store


def _track(store, user: str, n: int, **traits) -> None:
    kind = {"type": "identify", "traits": traits} if traits else {"type": "track", "event": "Order Completed"}
    row = normalize_message({**kind, "userId": user, "messageId": f"{user}-{n}"}, source="web",
                            received_at=utcnow() - timedelta(minutes=5))  # fmt: skip
    append_events(store.cursor(), [row])


def test_full_and_delta_exports_from_the_cli(tmp_path):
    project = write_project(
        tmp_path / "project",
        segments={"buyers": "performed('Order Completed')", "vip": "plan = 'vip'"},
        destinations={
            "buyers_csv": {"type": "file", "segment": "buyers", "path": "out/buyers.csv", "columns": ["email"]},
            "vip_delta": {"type": "file", "segment": "vip", "path": "out/vip-{timestamp}.parquet", "mode": "delta"},
        },
    )  # fmt: skip
    store_path = load_project(project).store_path
    with open_store(store_path) as store:
        _track(store, "ann", 0, email="ann@example.com", plan="vip")
        _track(store, "ann", 1)
        _track(store, "bob", 0, plan="vip")
    runner = CliRunner()
    p = ["--project", str(project)]
    assert runner.invoke(app, ["segments", "refresh", *p]).exit_code == 0
    result = runner.invoke(app, ["activate", "export", "buyers_csv", *p])
    assert result.exit_code == 0 and "wrote 1 rows" in result.output, result.output
    rows = pacsv.read_csv(project / "out" / "buyers.csv").to_pylist()
    assert [(r["profile_id"], r["email"]) for r in rows] == [("ann", "ann@example.com")]
    result = runner.invoke(app, ["activate", "export", "vip_delta", *p])
    assert result.exit_code == 0 and "wrote 2 rows" in result.output  # the first delta: every entry
    time.sleep(1.1)  # the next file gets another {timestamp}
    with open_store(store_path) as store:
        _track(store, "bob", 1, plan="free")  # bob leaves vip
        _track(store, "cy", 0, plan="vip")  # cy enters
    assert runner.invoke(app, ["segments", "refresh", *p]).exit_code == 0
    result = runner.invoke(app, ["activate", "export", "vip_delta", *p])
    assert result.exit_code == 0 and "wrote 2 rows" in result.output
    latest = sorted((project / "out").glob("vip-*.parquet"))[-1]
    changes = {(r["profile_id"], r["change"]) for r in pq.read_table(latest).to_pylist()}
    assert changes == {("bob", "exited"), ("cy", "entered")}
    result = runner.invoke(app, ["activate", "export", "nope", *p])
    assert result.exit_code == 1 and "not a file destination" in result.output


def test_the_server_writes_file_destinations_on_schedule(tmp_path):
    project = write_project(
        tmp_path / "project",
        segments={"buyers": "performed('Order Completed')"},
        destinations={"buyers_file": {"type": "file", "segment": "buyers", "path": "buyers.parquet",
                                      "every": "300ms"}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    server = start_server(project, keys)
    try:
        sdk_client(server.url, keys["web"]).track("dee", "Order Completed", {"order_id": "d1"})
        out = project / "buyers.parquet"
        wait_until(lambda: out.exists() and pq.read_table(out).num_rows == 1, timeout=10, what="the export")
        assert pq.read_table(out).column("profile_id").to_pylist() == ["dee"]
    finally:
        server.stop()
