"""`panorama traits compute|show` and `panorama metrics` end to end, in process."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from panorama.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _project(tmp_path, traits: str = ""):
    project = tmp_path / "shop"
    assert _invoke("init", project, "--region", "GB").exit_code == 0
    (project / "data").mkdir()
    (project / "data/orders.csv").write_text(
        "order_id,email,total,ordered_at\n"
        "O1,a@x.com,10,2024-01-01\n"
        "O2,b@x.com,30,2024-03-02\n"
        "O3,c@x.com,5,2024-06-04\n"
    )
    config = (project / "panorama.yaml").read_text().replace(
        "sources: {}",
        "sources:\n  shop:\n    path: data/orders.csv\n    kind: events\n    event: Order Completed\n"
        "    key: order_id\n    timestamp: ordered_at\n    identifiers: {email: email}\n"
        "    properties: {total: revenue, order_id: order_id}\n" + traits,
    )
    (project / "panorama.yaml").write_text(config)
    assert _invoke("ingest", "--project", project).exit_code == 0
    return project


def test_traits_compute_show_and_metrics(tmp_path):
    project = _project(tmp_path, "traits:\n  big_spender: {expr: \"revenue >= 20\"}\n")
    result = _invoke("traits", "compute", "--project", project)
    assert result.exit_code == 0, result.output
    assert "traits for 3 profiles from 3 events as of 2024-06-05 00:00" in result.output
    assert "lifecycle thresholds" in result.output and "RFM segment" in result.output

    listing = _invoke("traits", "show", "--json", "--project", project)
    defs = {d["name"]: d for d in json.loads(listing.output)}
    assert defs["big_spender"]["builtin"] is False and defs["orders"]["builtin"] is True

    from panorama.config import load_project
    from panorama.store import open_store

    with open_store(load_project(project).store_path) as store:
        pid = store.scalar("SELECT profile_id FROM profile_traits WHERE revenue = 30")
    one = _invoke("traits", "show", pid, "--json", "--project", project)
    data = json.loads(one.output)
    assert data["orders"] == 1 and data["big_spender"] is True and data["lifecycle_stage"] == "at_risk"
    assert _invoke("traits", "show", "nobody", "--project", project).exit_code == 1

    out = _invoke("metrics", "--from", "2024-01-01", "--to", "2024-06-30", "--json", "--project", project)
    assert out.exit_code == 0, out.output
    m = json.loads(out.output)
    assert m["period"]["end"] == "2024-07-01T00:00:00"  # --to is inclusive
    assert m["metrics"]["average_order_value"]["value"] == 15.0
    table = _invoke("metrics", "--segment", "big_spender", "--project", project)
    assert table.exit_code == 0 and "segment big_spender (1 profiles)" in table.output
    assert "NPS = 100 × (promoters − detractors) / responses" in table.output


def test_cli_errors_name_the_problem(tmp_path):
    project = _project(tmp_path, "traits:\n  bad: {agg: count, where: \"revenue >\"}\n")
    result = _invoke("traits", "compute", "--project", project)
    assert result.exit_code == 1 and "traits.bad.where: not a SQL expression" in result.output
    result = _invoke("metrics", "--from", "yesterday", "--project", project)
    assert result.exit_code == 1 and "--from 'yesterday': not a date" in result.output
    result = _invoke("metrics", "--segment", "orders > 1", "--project", project)
    assert result.exit_code == 1 and "run `panorama traits compute` first" in result.output
