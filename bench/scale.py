"""Benchmark: the same batch pipeline on DuckDB and on Spark local[2], for N customers.

    .venv/bin/python bench/scale.py [--customers 1000000] [--events-per-customer 20]
                                    [--master local[2]] [--driver-memory 2g] [--dir DIR]
                                    [--only duckdb|spark]

A store is generated straight with DuckDB SQL (as bench/traits.py: orders, order lines, page and
product views, emails, NPS answers, tickets over three years), with identifiers that make the
identity graph work: shop, email and survey events carry the customer's user id; web events
carry one of two anonymous ids (devices) of the customer, and the user id too on 30% of them
(a login), which links the devices to the customer.

Each engine runs in its own child process on its own copy of the store:

* duckdb: `unify` (components with scipy), traits + RFM + lifecycle, metrics, point-in-time
  features, batch segments (the segments engine's evaluation query);
* spark:  Spark session start, `unify` with Splink's Spark backend and the connected
  components on Spark, the store's log to the Parquet log (partitioned by date and source),
  then the golden record, traits + RFM + lifecycle, metrics, features and segments on Spark
  (`panorama.scale.pipeline.run`).

Prints each step's time, the totals, the peak RSS of the process tree (Python + the Spark
JVM, sampled every 0.2 s) and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from traits import mix_sql  # bench/traits.py: the same generator shape, another mix

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SEGMENTS = {
    "champions": "rfm_segment = 'Champions'",
    "big_spenders": "revenue > 500",
    "lapsing": "lifecycle_stage IN ('at_risk', 'lapsed') AND orders >= 2",
    "recent_buyers": "performed('Order Completed', within='30d')",
}

# event mix: (share, type, event, source)
MIX = [
    (0.06, "track", "Order Completed", "shop"),
    (0.12, "track", "Product Purchased", "items"),
    (0.38, "page", "Home", "web"),
    (0.18, "track", "Product Viewed", "web"),
    (0.14, "track", "Email Sent", "campaigns"),
    (0.05, "track", "Email Opened", "campaigns"),
    (0.02, "track", "Email Clicked", "campaigns"),
    (0.03, "track", "NPS Survey Answered", "nps"),
    (0.02, "track", "Ticket Opened", "support"),
]


def generate(path: Path, customers: int, events: int) -> None:
    from panorama.store import open_store

    kind, pick = mix_sql(MIX)
    started = time.perf_counter()
    with open_store(path) as store:
        store.execute("SELECT setseed(0.42)")
        store.execute(f"""
            INSERT INTO events (message_id, type, event, source, user_id, anonymous_id, "timestamp", received_at,
                                identifiers, properties, revenue, discount, price, value, category, channel, order_id)
            SELECT 'm' || i, {pick(1)}, {pick(2)}, {pick(3)},
                   CASE WHEN NOT web OR login THEN 'u' || u END,
                   CASE WHEN web THEN 'a' || u || '-' || CAST(i % 2 AS VARCHAR) END,
                   ts, greatest(ts, TIMESTAMP '2025-05-01'),  -- the history arrived in one backfill
                   CASE WHEN NOT web THEN [{{'type': 'user_id', 'value': 'u' || u}}]
                        WHEN login THEN [{{'type': 'user_id', 'value': 'u' || u}},
                                         {{'type': 'anonymous_id', 'value': 'a' || u || '-' || CAST(i % 2 AS VARCHAR)}}]
                        ELSE [{{'type': 'anonymous_id', 'value': 'a' || u || '-' || CAST(i % 2 AS VARCHAR)}}] END,
                   CASE WHEN k = 8 THEN json_object('status', CASE WHEN r2 < 0.8 THEN 'solved' ELSE 'open' END,
                                                    'resolution_hours', CAST(round(r2 * 72, 1) AS VARCHAR))
                        ELSE '{{}}' END,
                   CASE WHEN k = 0 THEN round(5 + r2 * 300, 2) END,
                   CASE WHEN k = 0 AND r2 < 0.2 THEN 5.0 END,
                   CASE WHEN k IN (1, 3) THEN round(3 + r2 * 100, 2) END,
                   CASE WHEN k = 7 THEN floor(r2 * 11) WHEN k = 8 AND r2 < 0.3 THEN 1 + floor(r2 * 16) END,
                   CASE WHEN k IN (1, 3) THEN 'cat' || CAST(floor(r2 * 11) AS INTEGER) END,
                   CASE WHEN k BETWEEN 4 AND 6 THEN 'email' END,
                   CASE WHEN k = 0 THEN 'o' || i END
            FROM (
                SELECT i, r, r2, k, u, ts, k IN (2, 3) AS web, r3 < 0.3 AS login FROM (
                    SELECT i, r, r2, r3, {kind} AS k, (hash(i // 7) % {customers}) AS u,
                           TIMESTAMP '2022-06-01' + to_seconds(CAST(floor(r4 * 3 * 365 * 86400) AS BIGINT)) AS ts
                    FROM (SELECT range AS i, random() AS r, random() AS r2, random() AS r3, random() AS r4
                          FROM range({events}))
                )
            )
        """)  # fmt: skip
        n = store.scalar("SELECT count(*) FROM events")
        store.execute("CHECKPOINT")
    print(f"generated {n:,} events for ~{customers:,} customers in {time.perf_counter() - started:.0f} s", flush=True)


def project(root: Path, driver_memory: str = "2g"):
    from panorama.config import Project, parse_config

    sources = {name: {"path": f"{name}.csv", "kind": "events", "key": "id", "timestamp": "t", "event": "X"}
               for name in ("shop", "items", "campaigns", "nps", "support")}  # fmt: skip
    config = parse_config({
        "name": "bench", "store": "bench.duckdb", "engine": "spark", "sources": sources,
        "spark": {"log_path": "parquet-log", "driver_memory": driver_memory},
        "segments": {name: {"where": where} for name, where in SEGMENTS.items()},
    })  # fmt: skip
    return Project(root, config)


class PeakRss:
    """Peak resident memory of this process and its descendants (the Spark JVM), sampled."""

    def __init__(self, every: float = 0.2):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree(os.getpid())))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_engine(engine: str, root: Path, master: str, driver_memory: str = "2g") -> dict:
    import datetime as dt

    from panorama.store import open_store

    proj = project(root, driver_memory)
    store = open_store(proj.store_path)
    rss = PeakRss()
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        steps[name] = round(time.perf_counter() - t, 2)
        print(f"  {engine}: {name} {steps[name]:.1f} s", flush=True)
        t = time.perf_counter()

    from panorama.identity.service import unify
    from panorama.traits.batch import default_as_of

    if engine == "duckdb":
        from panorama.predict.features import FeatureBuilder
        from panorama.scale.pipeline import duckdb_members
        from panorama.traits.batch import compute
        from panorama.traits.metrics import compute as metrics

        stats = unify(store, proj)
        lap("unify")
        as_of = default_as_of(store)
        run = compute(store, proj.config, as_of, point_in_time=False)
        lap("traits + RFM + lifecycle")
        metrics(store, proj.config)
        lap("metrics")
        fb = FeatureBuilder(store, proj.config.predictions)
        fb.prepare(as_of)
        features = fb.features(as_of)
        lap("features")
        members = duckdb_members(store, proj, as_of)
        lap("segments")
        profiles, events = run.profiles, run.events
    else:
        from panorama.scale.engine import session
        from panorama.scale.identity import unify_on_spark
        from panorama.scale.pipeline import run as spark_run

        spark = session(proj.config, master=master, local_dir=str(root / "spark-scratch"))
        lap("Spark session start")
        stats = unify_on_spark(store, proj, spark, root / "identity-work")
        lap("unify (Splink and components on Spark)")
        as_of = default_as_of(store)
        out = spark_run(store, proj, spark, as_of=as_of)
        for name, seconds in out.seconds.items():
            steps[name] = seconds
        t = time.perf_counter()
        features, members = out.features, out.members
        profiles, events = out.profiles, out.events
        spark.stop()
    store.close()
    total = round(sum(steps.values()), 2)
    return {
        "engine": engine, "steps": steps, "total": total, "peak_rss_mb": rss.stop() / 2**20,
        "profiles": profiles, "events": events, "identity_profiles": stats.profiles,
        "unify_seconds": stats.seconds, "features": len(features),
        "segments": {k: len(v) for k, v in members.items()}, "as_of": dt.datetime.isoformat(as_of),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--events-per-customer", type=int, default=20)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="2g",
                    help="spark.driver_memory (in local mode the executors' memory too; 1M customers needs 8g)")  # fmt: skip
    ap.add_argument("--dir", type=Path, default=Path("/tmp/panorama-bench-scale"))
    ap.add_argument("--only", choices=("duckdb", "spark"))
    ap.add_argument("--child", choices=("duckdb", "spark"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    base = args.dir / f"{args.customers}"
    if args.child:
        result = run_engine(args.child, base / args.child, args.master, args.driver_memory)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    source = base / "generated.duckdb"
    if not source.exists():
        base.mkdir(parents=True, exist_ok=True)
        generate(source, args.customers, args.customers * args.events_per_customer)
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()}", flush=True)
    results = []
    for engine in [args.only] if args.only else ["duckdb", "spark"]:
        work = base / engine
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copy(source, work / "bench.duckdb")
        cmd = [sys.executable, __file__, "--child", engine, "--customers", str(args.customers),
               "--master", args.master, "--driver-memory", args.driver_memory, "--dir", str(args.dir)]  # fmt: skip
        proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        sys.stdout.write("".join(line + "\n" for line in proc.stdout.splitlines() if not line.startswith("RESULT")))
        line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
    print(f"load average after: {os.getloadavg()}")
    print(f"\n{args.customers:,} customers, {results[0]['events']:,} events, "
          f"{results[0]['identity_profiles']:,} profiles")  # fmt: skip
    for r in results:
        print(f"{r['engine']:>7}: total {r['total']:7.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB; "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items()))  # fmt: skip
        print(f"         segments {r['segments']}, features for {r['features']:,} profiles")
    if len(results) == 2:
        same = results[0]["segments"] == results[1]["segments"] and results[0]["profiles"] == results[1]["profiles"]
        print(f"spark / duckdb time: {results[1]['total'] / results[0]['total']:.2f}x; same profiles and segment "
              f"sizes: {same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
