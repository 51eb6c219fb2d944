"""Benchmark: predictions II (cross-sell/upsell, next purchase, preferred channel and discount,
next best offer, NPS) training and scoring at N customers (default 1M).

Synthetic customers (panorama.predict.synthetic.generate: orders, items, monthly emails, tickets,
NPS; plus add_marketing: monthly email/SMS/push campaigns with discounts, 10% holdouts, opens,
clicks, redemptions and the orders they cause, NPS comments) are written into a fresh DuckDB
store, then `Predictor.predict(kinds=(), extras=True)` runs the predictions II part of
`panorama predict` (churn and CLV are measured by bench/predict.py).

    .venv/bin/python bench/predict_extras.py [--customers 1000000] [--dir /tmp/predict-extras-bench]

Prints wall time per prediction and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

from panorama.config import PredictionsConfig
from panorama.predict import synthetic
from panorama.predict.features import Sources
from panorama.predict.service import Predictor
from panorama.store import open_store


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/predict-extras-bench"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    store = open_store(args.dir / "bench.duckdb")
    store.execute(f"SET threads = {args.threads}")
    t0 = time.perf_counter()
    events = synthetic.generate(store, args.customers)
    events += synthetic.add_marketing(store)
    print(
        f"generated {events:,} events for {args.customers:,} customers in {time.perf_counter() - t0:.1f} s "
        f"(peak RSS {rss_mb():,.0f} MB, load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(
            f"  {time.perf_counter() - start:7.1f} s  {msg}  (peak RSS {rss_mb():,.0f} MB)",
            flush=True,
        )

    predictor = Predictor(
        store,
        PredictionsConfig(threads=args.threads),
        Sources(synthetic.EVENTS_BY_USER, None),
        log=log,
    )
    result = predictor.predict(kinds=(), extras=True)
    total = time.perf_counter() - start
    print(f"\n{'prediction':<20} {'profiles':>10}  note")
    for kind, n in result.scored.items():
        print(f"{kind:<20} {n:>10,}  {result.notes.get(kind, '')}")
    for kind, problem in result.problems.items():
        print(f"{kind}: NOT SCORED: {problem}")
    print(
        f"\ntotal predictions II: {total:.1f} s; peak RSS {rss_mb():,.0f} MB; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    store.close()


if __name__ == "__main__":
    main()
