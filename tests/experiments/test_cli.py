"""`panorama experiments` and `panorama hypotheses` end to end on a project directory."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from panorama.cli import app
from panorama.config import init_project, load_project
from panorama.store import open_store

from .test_analysis import _log

runner = CliRunner()


def test_experiments_and_hypotheses_cli(tmp_path, monkeypatch):
    init_project(tmp_path, name="t")
    # profiles: one per user id (identity resolution has its own tests)
    with open_store(load_project(tmp_path).store_path) as store:
        _log(store, {"control": (400, 0.1), "treatment": (400, 0.3)})
    monkeypatch.setattr("panorama.profiles.profile_events_sql",
                        lambda store: "SELECT user_id AS profile_id, * FROM events")
    p = ["-p", str(tmp_path)]
    r = runner.invoke(app, ["experiments", "list", *p])
    assert r.exit_code == 0, r.output
    assert "EXP-1" in r.output and "800" in r.output
    r = runner.invoke(app, ["experiments", "analyze", "EXP-1", "--json", *p])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["verdict"] == "treatment beats control"
    r = runner.invoke(app, ["experiments", "analyze", "EXP-1", *p])
    assert "verdict: treatment beats control" in r.output
    r = runner.invoke(app, ["experiments", "analyze", "NOPE", *p])
    assert r.exit_code == 1 and "no profile has" in r.output
    r = runner.invoke(app, ["experiments", "power", "--baseline", "0.1", "--mde", "0.2"])
    assert r.exit_code == 0 and "per variant" in r.output
    r = runner.invoke(app, ["hypotheses", "add", "One-page checkout lifts conversion", "-i", "8", "-c", "6",
                            "-e", "4", *p])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["hypotheses", "add", "Banner", "-i", "3", "-c", "3", "-e", "11", *p])
    assert r.exit_code == 1 and "ease" in r.output
    runner.invoke(app, ["hypotheses", "add", "Banner", "-i", "3", "-c", "3", "-e", "9", *p])
    assert runner.invoke(app, ["hypotheses", "link", "1", "EXP-1", *p]).exit_code == 0
    r = runner.invoke(app, ["hypotheses", "evaluate", "1", *p])
    assert r.exit_code == 0 and "won" in r.output, r.output
    r = runner.invoke(app, ["hypotheses", "list", *p])
    lines = [line for line in r.output.splitlines() if "│" in line]
    assert "One-page" in lines[0] and "won" in lines[0]  # ICE 6 ranks above ICE 5
