"""Benchmark: computed traits + RFM + lifecycle for 1M customers / ~20M events (DuckDB).

    .venv/bin/python bench/traits.py [--customers 1000000] [--events 20000000] [--dir DIR]
                                     [--threads N] [--memory-limit 8GB] [--metrics] [--realtime]

Synthetic events are generated straight into a store with DuckDB SQL (in a child process, so
the figures below are the computation's own): orders (some repeated by a second source, as
web Order Completed repeat shop orders), order lines with categories, page views and product
views, email sends/opens/clicks, NPS answers and support tickets over three years, one user id
per customer (profiles = user ids; identity resolution is not part of this benchmark). The
store is kept in DIR and reused when it already has the requested size.

Prints the time of every pipeline step, the total, and the peak RSS of the computing process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# event mix: (share, type, event, source)
MIX = [
    (0.06, "track", "Order Completed", "shop"),
    (0.02, "track", "Order Completed", "web"),  # repeats of shop orders (same order_id)
    (0.12, "track", "Product Purchased", "items"),
    (0.38, "page", "Home", "web"),
    (0.16, "track", "Product Viewed", "web"),
    (0.14, "track", "Email Sent", "campaigns"),
    (0.05, "track", "Email Opened", "campaigns"),
    (0.02, "track", "Email Clicked", "campaigns"),
    (0.03, "track", "NPS Survey Answered", "nps"),
    (0.02, "track", "Ticket Opened", "support"),
]


def mix_sql(mix) -> tuple[str, Callable[[int], str]]:
    """SQL for a generated event's kind from `r` (the shares of `mix`, rows of (share, type,
    event, source)), and `pick(col)`: column `col` of the row for kind `k`."""
    bounds, acc = [], 0.0
    for share, *_ in mix:
        acc += share
        bounds.append(acc)
    kind = "CASE " + " ".join(f"WHEN r < {b:.4f} THEN {i}" for i, b in enumerate(bounds)) + f" ELSE {len(mix) - 1} END"
    return kind, lambda col: "CASE k " + " ".join(f"WHEN {i} THEN '{m[col]}'" for i, m in enumerate(mix)) + " END"


def generate(path: Path, customers: int, events: int, threads: int) -> None:
    from panorama.store import open_store

    kind, pick = mix_sql(MIX)
    started = time.perf_counter()
    with open_store(path) as store:
        store.execute(f"SET threads = {threads}")
        store.execute("SELECT setseed(0.42)")
        # the order a web Order Completed repeats: the shop order with the same number
        store.execute(f"""
            INSERT INTO events (message_id, type, event, source, user_id, "timestamp", received_at, identifiers,
                                properties, revenue, discount, price, value, category, channel, order_id)
            SELECT 'm' || i, {pick(1)}, {pick(2)}, {pick(3)}, 'u' || u, ts, ts, [],
                   CASE WHEN k = 9 THEN json_object('status', CASE WHEN r2 < 0.8 THEN 'solved' ELSE 'open' END,
                                                    'resolution_hours', CAST(round(r2 * 72, 1) AS VARCHAR))
                        ELSE '{{}}' END,
                   CASE WHEN k IN (0, 1) THEN round(5 + r2 * 300, 2) END,
                   CASE WHEN k IN (0, 1) AND r2 < 0.2 THEN 5.0 END,
                   CASE WHEN k IN (2, 4) THEN round(3 + r2 * 100, 2) END,
                   CASE WHEN k = 8 THEN floor(r2 * 11) WHEN k = 9 AND r2 < 0.3 THEN 1 + floor(r2 * 16) END,
                   CASE WHEN k IN (2, 4) THEN 'cat' || CAST(floor(r2 * 11) AS INTEGER) END,
                   CASE WHEN k BETWEEN 5 AND 7 THEN 'email' END,
                   CASE WHEN k = 0 THEN 'o' || i WHEN k = 1 THEN 'o' || (i - 1) END
            FROM (
                SELECT i, r, r2, {kind} AS k,
                       (hash(i // 7) % {customers}) AS u,
                       TIMESTAMP '2022-06-01' + to_seconds(CAST(floor(r3 * 3 * 365 * 86400) AS BIGINT)) AS ts
                FROM (SELECT range AS i, random() AS r, random() AS r2, random() AS r3 FROM range({events}))
            )
        """)  # fmt: skip
        n = store.scalar("SELECT count(*) FROM events")
        store.execute("CHECKPOINT")
    print(f"generated {n:,} events for ~{customers:,} customers in {time.perf_counter() - started:.0f} s", flush=True)


def config():
    from panorama.config import parse_config

    sources = {name: {"path": f"{name}.csv", "kind": "events", "key": "id", "timestamp": "t", "event": "X"}
               for name in ("shop", "items", "campaigns", "nps", "support")}  # fmt: skip
    return parse_config({"name": "bench", "sources": sources})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/panorama-bench-traits"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 8GB (default: DuckDB's)")
    ap.add_argument("--metrics", action="store_true", help="also time `metrics.compute` over the last year")
    ap.add_argument("--realtime", action="store_true", help="also time real-time micro-batches of 1,000 events")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    path = args.dir / f"traits-{args.customers}-{args.events}.duckdb"
    if args.generate_only:
        generate(path, args.customers, args.events, args.threads)
        return 0
    if not path.exists():
        args.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--generate-only", "--customers", str(args.customers),
               "--events", str(args.events), "--dir", str(args.dir), "--threads", str(args.threads)]  # fmt: skip
        subprocess.run(cmd, check=True)

    from panorama.store import open_store
    from panorama.traits.batch import Inputs, compute

    store = open_store(path)
    store.execute(f"SET threads = {args.threads}")
    if args.memory_limit:
        store.execute(f"SET memory_limit = '{args.memory_limit}'")
    store.execute("SET preserve_insertion_order = false")
    events = store.scalar("SELECT count(*) FROM events")
    print(f"store {path} ({path.stat().st_size / 2**30:.1f} GiB): {events:,} events; "
          f"{args.threads} threads, {os.cpu_count()} cores", flush=True)  # fmt: skip
    started = time.perf_counter()
    run = compute(store, config(), inputs=Inputs.by_user_id(), log=lambda m: print("  " + m, flush=True))
    total = time.perf_counter() - started
    print(f"traits + RFM + lifecycle: {run.profiles:,} profiles, {run.events:,} events, "
          f"{len(run.timings)} steps in {total:.1f} s ({run.events / total:,.0f} events/s); "
          f"peak RSS {rss_mb():,.0f} MB", flush=True)  # fmt: skip
    p = run.parameters
    print(f"  RFM breakpoints {p.rfm}\n  lifecycle {p.lifecycle}")
    seg = store.execute(
        "SELECT rfm_segment, count(*) FROM profile_traits GROUP BY 1 ORDER BY 2 DESC LIMIT 12"
    ).fetchall()
    print("  segments " + ", ".join(f"{s or '(none)'} {n:,}" for s, n in seg))
    if args.metrics:
        from panorama.traits import metrics

        t = time.perf_counter()
        m = metrics.compute(store, config(), inputs=Inputs.by_user_id(), segment="rfm_segment = 'Champions'")
        print(f"metrics (segment Champions, {m['profiles']:,} profiles) in {time.perf_counter() - t:.1f} s: "
              + ", ".join(f"{k} {v['value']}" for k, v in m["metrics"].items()), flush=True)  # fmt: skip
    if args.realtime:
        realtime_bench(store)
    print(f"peak RSS {rss_mb():,.0f} MB")
    store.close()
    return 0


def realtime_bench(store) -> None:
    import datetime as dt
    import random

    from panorama.ingest.log import append_events, events_table
    from panorama.traits import realtime
    from panorama.traits.batch import Inputs

    rng = random.Random(1)
    last = store.scalar('SELECT max("timestamp") FROM events')
    times = []
    for b in range(5):
        rows = []
        for j in range(1000):
            u = f"u{rng.randrange(1_000_000)}"
            ts = last + dt.timedelta(seconds=rng.randrange(3600))
            event, typ = rng.choice([("Home", "page"), ("Product Viewed", "track"), ("Email Opened", "track"),
                                     ("Order Completed", "track")])  # fmt: skip
            row = {"message_id": f"rt{b}-{j}", "type": typ, "event": event, "source": "api", "user_id": u,
                   "timestamp": ts, "received_at": ts, "identifiers": [], "properties": "{}"}  # fmt: skip
            if event == "Order Completed":
                row.update(order_id=f"rt{b}-{j}", revenue=50.0)
            rows.append(row)
        table = events_table(rows)
        append_events(store.cursor(), table)
        before = (realtime.stats.merged, realtime.stats.recomputed)
        t = time.perf_counter()
        realtime.on_events(store, table, inputs=Inputs.by_user_id())
        times.append(time.perf_counter() - t)
        merged = realtime.stats.merged - before[0]
        recomputed = realtime.stats.recomputed - before[1]
        print(f"  real-time batch {b}: 1,000 events, {merged} profiles merged, {recomputed} recomputed from the "
              f"log, {times[-1]:.2f} s", flush=True)  # fmt: skip
    print(f"real-time: median {sorted(times)[len(times) // 2]:.2f} s per 1,000-event micro-batch")


if __name__ == "__main__":
    sys.exit(main())
