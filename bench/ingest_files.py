"""Benchmark: file ingestion rows/s (CSV events and records), with peak RSS.

    .venv/bin/python bench/ingest_files.py [--rows 1000000]

Writes a synthetic CSV of shop orders (with 0.1% bad rows) and a CRM CSV, ingests each
into a fresh project, prints rows/s and peak RSS, then re-ingests (the idempotent no-op
path). Baseline in the same run: DuckDB's own `read_csv` into a table with no validation
(the ceiling for loading that file).
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from panorama.config import load_project
from panorama.ingest.files import ingest_source
from panorama.store import open_store

CONFIG = """
name: bench
store: panorama.duckdb
identity: {default_region: GB}
sources:
  shop:
    path: shop_orders.csv
    kind: events
    event: Order Completed
    key: order_id
    timestamp: ordered_at
    identifiers: {customer_email: email, customer_phone: phone}
    attributes: {ship_name: full_name, ship_postcode: postal_code}
    properties: {total: revenue, currency: currency, channel: channel, coupon: coupon}
  crm:
    path: crm.csv
    kind: records
    key: customer_id
    timestamp: created_at
    identifiers: {customer_id: crm_id, email: email, phone: phone}
    attributes: {first_name: first_name, last_name: last_name, birth_date: birth_date, city: city}
    formats: {birth_date: "%d/%m/%Y"}
"""


def write_orders(path: Path, rows: int, rng: random.Random) -> None:
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["order_id", "customer_email", "customer_phone", "ship_name", "ship_postcode",
                      "total", "currency", "channel", "coupon", "ordered_at"])  # fmt: skip
        for i in range(rows):
            total = f"{rng.uniform(5, 400):.2f}" if i % 1000 != 7 else "n/a"
            out.writerow([f"O{i:08d}", f"user{i % 250_000}@example.com", f"07700 9{i % 100_000:05d}",
                          "Jane Doe", "SW1A 1AA", total, "GBP", "web", "" if i % 5 else "SAVE10",
                          f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"])  # fmt: skip


def write_crm(path: Path, rows: int) -> None:
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["customer_id", "first_name", "last_name", "email", "phone", "birth_date", "city", "created_at"])
        for i in range(rows):
            out.writerow([f"C{i:08d}", "Jane", "Doe", f"user{i}@example.com", f"+44 7700 9{i % 100_000:05d}",
                          f"{1 + i % 28:02d}/{1 + i % 12:02d}/19{50 + i % 50}", "London", "2023-05-01 10:00:00"])  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="panorama-bench-"))
    try:
        (work / "panorama.yaml").write_text(CONFIG)
        write_orders(work / "shop_orders.csv", args.rows, random.Random(1))
        write_crm(work / "crm.csv", args.rows // 4)
        project = load_project(work)

        baseline = duckdb.connect(str(work / "baseline.duckdb"))
        t0 = time.perf_counter()
        baseline.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{work / 'shop_orders.csv'}', all_varchar=true)")
        ceiling = args.rows / (time.perf_counter() - t0)
        baseline.close()

        with open_store(project.store_path) as store:
            for name in ("shop", "crm"):
                for attempt in ("first load", "re-ingest"):
                    r = ingest_source(store, project, name)
                    print(f"{name:5} {attempt:10} rows={r.rows_read:>9,} loaded={r.loaded:>9,} "
                          f"duplicate={r.duplicates:>9,} rejected={r.rejected:>5,} "
                          f"seconds={r.seconds:6.2f} rows/s={r.rows_per_second:>10,.0f}")  # fmt: skip
        print(f"baseline: DuckDB read_csv (no validation, no dedupe) rows/s={ceiling:,.0f}")
        print(f"peak RSS: {peak_rss_mb():,.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
