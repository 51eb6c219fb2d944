"""`panorama predict`, `evaluate predictions`, `models` and `export profiles` through the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import json

import numpy as np
from typer.testing import CliRunner

from panorama.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _orders(path, customers=400, seed=3):
    """Orders of customers who each buy at their own rate until their own end date."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2022, 1, 1)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "customer_id", "ordered_at", "total"])
        n = 0
        for c in range(customers):
            life = rng.exponential(500)
            rate = rng.gamma(2, 1 / 40)  # orders per day
            t = rng.uniform(0, 300)
            while t < min(life, 730):
                n += 1
                w.writerow([f"O{n}", f"C{c}", (start + dt.timedelta(days=t)).isoformat(sep=" "),
                            f"{rng.gamma(2, 30):.2f}"])
                t += rng.exponential(1 / rate)


def test_cli_predict_evaluate_models_export(tmp_path):
    project = tmp_path / "shop"
    assert _invoke("init", project).exit_code == 0
    (project / "data").mkdir()
    _orders(project / "data/orders.csv")
    config = (project / "panorama.yaml").read_text().replace(
        "sources: {}",
        "sources:\n  shop:\n    path: data/orders.csv\n    kind: events\n    event: Order Completed\n"
        "    key: order_id\n    timestamp: ordered_at\n    identifiers: {customer_id: user_id}\n"
        "    properties: {total: revenue}\n"
        "predictions:\n  churn: {horizon_days: 60}\n  clv: {horizon_days: 120}\n"
        "  min_training_profiles: 50\n  min_class_count: 10\n",
    )
    (project / "panorama.yaml").write_text(config)
    assert _invoke("ingest", "--project", project).exit_code == 0
    if any(c.name == "unify" for c in app.registered_commands):  # identity resolution: one profile per customer
        unified = _invoke("unify", "--project", project)
        assert unified.exit_code == 0, unified.output

    bad = _invoke("predict", "--project", project, "--as-of", "tomorrow")
    assert bad.exit_code == 1 and "--as-of 'tomorrow': not a date" in bad.output

    out = _invoke("predict", "--project", project, "--as-of", "2023-06-01")
    assert out.exit_code == 0, out.output
    trained = "predictions as of 2023-06-01" in out.output
    if not trained:  # profiles not resolved yet (no identity module): one profile per order
        assert "not trained" in out.output and "need at least" in out.output
    listing = _invoke("models", "--project", project)
    assert listing.exit_code == 0
    assert ("no models yet" in listing.output) != trained
    assert _invoke("models", "--show", "churn-v1", "--project", project).exit_code == (0 if trained else 1)

    report = _invoke("evaluate", "predictions", "--as-of", "2023-06-01", "--json", "--project", project)
    assert report.exit_code == (0 if trained else 1), report.output
    data = json.loads(report.output[report.output.index("{"):])
    assert data["as_of"] == "2023-06-01"
    too_late = _invoke("evaluate", "predictions", "--as-of", "2024-01-01", "--project", project)
    assert too_late.exit_code == 1 and "needs data until" in too_late.output

    exported = tmp_path / "profiles.csv"
    assert _invoke("export", "profiles", "--out", exported, "--project", project).exit_code == 0
    with exported.open() as f:
        rows = list(csv.DictReader(f))
    assert {"churn_probability", "churn_drivers", "predicted_clv", "clv_drivers"} <= set(rows[0])
    if trained:
        scored = [r for r in rows if r["predicted_clv"]]
        assert scored and json.loads(scored[0]["clv_drivers"])[0]["text"]
        shown = _invoke("models", "--show", "churn-v1", "--project", project)
        assert '"importance"' in shown.output and '"data_fingerprint"' in shown.output
