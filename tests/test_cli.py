"""The CLI end to end, in process: init, ingest with bad rows, status, dead letters, exports."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from panorama.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_init_ingest_export(tmp_path):
    project = tmp_path / "acme"
    assert _invoke("init", project, "--region", "GB").exit_code == 0
    (project / "data").mkdir()
    (project / "data/orders.csv").write_text(
        "order_id,email,total,ordered_at\n"
        "O1,a@x.com,10,2024-01-01\n"
        "O2,b@x.com,x,2024-01-02\n"
        ",c@x.com,5,2024-01-03\n"
        "O4,c@x.com,5,2024-01-04\n"
    )
    config = (project / "panorama.yaml").read_text().replace(
        "sources: {}",
        "sources:\n  shop:\n    path: data/orders.csv\n    kind: events\n    event: Order Completed\n"
        "    key: order_id\n    timestamp: ordered_at\n    identifiers: {email: email}\n"
        "    properties: {total: revenue}\n",
    )
    (project / "panorama.yaml").write_text(config)

    first = _invoke("ingest", "--project", project)
    assert first.exit_code == 0, first.output
    assert "2 rejected rows in dead letters" in first.output
    again = _invoke("ingest", "shop", "--project", project)
    assert again.exit_code == 0

    dead = _invoke("deadletters", "list", "--json", "--project", project)
    letters = [json.loads(line) for line in dead.output.splitlines()]
    assert [(d["file"], d["line"], d["reason"]) for d in letters] == [
        ("data/orders.csv", 3, "property 'revenue' (column 'total'): 'x' is not a number"),
        ("data/orders.csv", 4, "key column 'order_id' is empty"),
    ]

    out = tmp_path / "identities.csv"
    assert _invoke("export", "identities", "--out", out, "--project", project).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["source"], r["record_id"]) for r in rows] == [("shop", "O1"), ("shop", "O4")]
    assert len({r["profile_id"] for r in rows}) == 2

    out = tmp_path / "identifiers.parquet"
    assert _invoke("export", "identifiers", "--out", out, "--project", project).exit_code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert sorted((r["type"], r["value"]) for r in table) == [("email", "a@x.com"), ("email", "c@x.com")]

    out = tmp_path / "profiles.csv"
    assert _invoke("export", "profiles", "--out", out, "--project", project).exit_code == 0
    assert len(list(csv.DictReader(out.open()))) == 2


def test_errors_are_messages_not_tracebacks(tmp_path):
    result = _invoke("ingest", "--project", tmp_path)
    assert result.exit_code == 1
    assert "panorama.yaml: not found" in result.output
    (tmp_path / "panorama.yaml").write_text("name: a\nsources:\n  s: {path: nope.csv, kind: segment}\n")
    result = _invoke("ingest", "--project", tmp_path)
    assert result.exit_code == 1 and "nope.csv: file not found" in result.output
    result = _invoke("ingest", "other", "--project", tmp_path)
    assert result.exit_code == 1 and "unknown source(s) other" in result.output
    result = _invoke("export", "profiles", "--out", tmp_path / "p.xlsx", "--project", tmp_path)
    assert result.exit_code == 1 and "use .csv or .parquet" in result.output


def test_demo_run_generates_and_runs_the_pipeline(tmp_path):
    project = tmp_path / "demo"
    result = _invoke("demo", "run", "--dir", project, "--customers", 300, "--seed", 3, "--no-serve")
    assert result.exit_code == 0, result.output
    status = _invoke("deadletters", "list", "--json", "--project", project)
    assert status.output.strip() == ""  # the demo's files load without a rejected row
    out = tmp_path / "identities.csv"
    assert _invoke("export", "identities", "--out", out, "--project", project).exit_code == 0
    truth = {(r["source"], r["record_id"]) for r in csv.DictReader((project / "truth/identities.csv").open())}
    exported = {(r["source"], r["record_id"]) for r in csv.DictReader(out.open())}
    assert exported == truth  # every row of every source is in the store, once
