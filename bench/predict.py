"""Benchmark: churn + CLV training and scoring at N customers (default 1M).

Synthetic customers (panorama.predict.synthetic: orders, items, monthly emails, tickets, NPS)
are written straight into a fresh DuckDB store with SQL, then `Predictor.predict` runs as
`panorama predict` does: point-in-time features for 4 + 4 stacked training windows, LightGBM
churn and two-part CLV (validation fit + refit), BG/NBD + Gamma-Gamma baselines, scoring of
every profile with per-profile drivers (TreeSHAP), and the write of the scores table.

    .venv/bin/python bench/predict.py [--customers 1000000] [--dir /tmp/predict-bench]

Prints wall time per phase and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--dir", type=Path, default=Path("/tmp/predict-bench"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    store = open_store(args.dir / "bench.duckdb")
    store.execute(f"SET threads = {args.threads}")

    t0 = time.perf_counter()
    events = synthetic.generate(store, args.customers)
    gen = time.perf_counter() - t0
    print(f"generated {events:,} events for {args.customers:,} customers in {gen:.1f} s "
          f"(peak RSS {rss_mb():,.0f} MB)", flush=True)

    marks: list[tuple[str, float]] = []
    start = time.perf_counter()

    def log(msg: str) -> None:
        marks.append((msg, time.perf_counter() - start))
        print(f"  {time.perf_counter() - start:7.1f} s  {msg}", flush=True)

    config = PredictionsConfig(threads=args.threads)
    predictor = Predictor(store, config, Sources(synthetic.EVENTS_BY_USER, None), log=log)
    result = predictor.predict()
    total = time.perf_counter() - start
    print(f"\npredict (train churn + CLV, score, drivers, write) for {args.customers:,} customers:")
    for kind, record in result.models.items():
        m = record.metrics["model"]
        metric = f"AUC {m['roc_auc']:.3f}" if kind == "churn" else f"Gini {m['normalized_gini']:.3f}"
        print(f"  {kind:5s} {record.model_id}: {record.n_train:,} training rows, trained in "
              f"{record.train_seconds:.1f} s, validation {metric}, scored {result.scored[kind]:,} profiles")
    scoring = total - sum(r.train_seconds for r in result.models.values())
    print(f"  total {total:.1f} s (training {total - scoring:.1f} s; preparation + scoring + drivers + write "
          f"{scoring:.1f} s); {args.customers / total:,.0f} customers/s end to end")
    print(f"  peak RSS {rss_mb():,.0f} MB")
    for kind, problem in result.problems.items():
        print(f"  {kind}: {problem}")
    store.close()


if __name__ == "__main__":
    main()
