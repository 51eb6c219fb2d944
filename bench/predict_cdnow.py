"""Backtest churn and CLV on the CDNOW order log (Fader & Hardie's classic BTYD data set).

The full CDNOW log (23,570 customers who first bought in Q1 1997, 69,659 orders until June
1998) is shipped inside the `lifetimes` package (MIT) as `lifetimes/datasets/CDNOW_master.txt`.
It is not in this repository and `lifetimes` is not a dependency; fetch the file with pip:

    .venv/bin/pip download lifetimes==0.11.3 --no-deps -d /tmp/lt && cd /tmp/lt && unzip -o -q Lifetimes-*.whl
    .venv/bin/python bench/predict_cdnow.py /tmp/lt/lifetimes/datasets/CDNOW_master.txt

The script writes the orders as a CSV, creates a Panorama project with one `events` source for
it, ingests it through the normal file ingestion, and backtests as of 1998-01-01 with churn
over 90 days and CLV over 180 days (the data end on 1998-06-30). Profiles are the CDNOW
customer ids (each order carries its customer's id as `user_id`; identity resolution would
give the same grouping).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import yaml

from panorama.config import load_project
from panorama.predict.commands import print_report
from panorama.predict.features import Sources
from panorama.predict.service import Predictor
from panorama.store import open_store

BY_USER = "SELECT user_id AS profile_id, * FROM events WHERE user_id IS NOT NULL"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("master", type=Path, help="CDNOW_master.txt")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/cdnow-project"))
    ap.add_argument("--as-of", default="1998-01-01")
    ap.add_argument("--churn-days", type=int, default=90)
    ap.add_argument("--clv-days", type=int, default=180)
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    (args.dir / "data").mkdir(parents=True)
    with args.master.open() as src, (args.dir / "data/orders.csv").open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["order_id", "customer_id", "ordered_at", "cds", "amount"])
        for i, line in enumerate(src):
            cust, date, cds, amount = line.split()
            w.writerow([f"O{i}", cust, f"{date[:4]}-{date[4:6]}-{date[6:]}", cds, amount])
    config = {
        "name": "cdnow", "store": "panorama.duckdb",
        "sources": {"orders": {
            "path": "data/orders.csv", "kind": "events", "event": "Order Completed", "key": "order_id",
            "timestamp": "ordered_at", "identifiers": {"customer_id": "user_id"},
            "properties": {"order_id": "order_id", "amount": "revenue", "cds": "quantity"}}},
        "predictions": {"churn": {"horizon_days": args.churn_days}, "clv": {"horizon_days": args.clv_days}},
    }
    (args.dir / "panorama.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project = load_project(args.dir)
    from panorama.ingest.files import ingest_source

    with open_store(project.store_path) as store:
        r = ingest_source(store, project, "orders")
        print(f"ingested {r.loaded:,} orders ({r.rejected} rejected)")
        predictor = Predictor(store, project.config.predictions, Sources(BY_USER, None), log=print)
        report = predictor.evaluate(dt.datetime.fromisoformat(args.as_of), save=False)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
