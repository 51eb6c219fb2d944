"""Benchmark: `panorama unify` on the demo data set (all sources).

    .venv/bin/python bench/identity.py                   # 100k customers
    .venv/bin/python bench/identity.py --million         # 1M customers (~72M rows)
    .venv/bin/python bench/identity.py --customers 20000 --dir /tmp/demo20k

Generates and ingests the demo into DIR once (timed separately: wall, CPU, rows/s per
source; reused on later runs), then times a full `unify` from the log (with probabilistic matching) and a second, incremental-looking run
(same log: ids kept, nothing merges). Prints wall time, peak RSS, the rate in records and
events per second, the time per stage, and pairwise precision / recall / F1 against the
demo's truth.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the normalising
    workers): on a shared machine this, unlike wall time, does not depend on the load."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def prepare(directory: Path, customers: int, seed: int, memory_limit: str) -> None:
    """Generate the demo with `panorama demo generate` and load it with the file ingestion of
    `panorama ingest` (`ingest_source`, in this process so that DuckDB's memory limit applies),
    printing wall time, CPU time, rows/s per source and the load average."""
    panorama = str(Path(sys.executable).parent / "panorama")
    if not (directory / "panorama.yaml").exists():
        started, cpu = time.perf_counter(), _cpu_seconds()
        subprocess.run([panorama, "demo", "generate", str(directory), "--customers", str(customers),
                        "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"generated {customers:,} customers in {time.perf_counter() - started:,.0f} s wall, "
              f"{_cpu_seconds() - cpu:,.0f} s CPU; load average {_load()}", flush=True)  # fmt: skip
    if (directory / ".ingested").exists():
        return
    from panorama.config import load_project
    from panorama.ingest.files import ingest_source
    from panorama.store import open_store

    project = load_project(directory)
    started, cpu, rows = time.perf_counter(), _cpu_seconds(), 0
    with open_store(project.store_path) as store:
        store.execute(f"SET memory_limit = '{memory_limit}'")
        for name in project.config.sources:
            result = ingest_source(store, project, name)
            rows += result.rows_read
            print(f"  ingested {name}: {result.rows_read:,} rows ({result.rejected:,} rejected) in "
                  f"{result.seconds:,.1f} s, {result.rows_per_second:,.0f} rows/s; load average {_load()}",
                  flush=True)  # fmt: skip
    wall = time.perf_counter() - started
    print(f"ingested {rows:,} rows in {wall:,.0f} s wall ({rows / wall:,.0f} rows/s), "
          f"{_cpu_seconds() - cpu:,.0f} s CPU, peak RSS {_rss_mb()[0]:,.0f} MB; load average {_load()}",
          flush=True)  # fmt: skip
    (directory / ".ingested").write_text("ok")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 customers")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--no-splink", action="store_true", help="deterministic graph only")
    parser.add_argument("--memory-limit", default="8GB", help="DuckDB memory_limit (default 8GB)")
    parser.add_argument("--prepare-only", action="store_true", help="generate and ingest, do not unify")
    parser.add_argument("--once", action="store_true", help="one unify, not the second (ids kept) one")
    parser.add_argument("--eval-memory-limit", default="18GB", help="DuckDB memory_limit for the scoring")
    args = parser.parse_args(argv)
    customers = 1_000_000 if args.million else args.customers
    directory = args.dir or Path(f"/tmp/panorama-bench-identity-{customers}")
    prepare(directory, customers, args.seed, args.memory_limit)
    if args.prepare_only:
        return 0

    from panorama.config import load_project
    from panorama.identity.evaluate import evaluate_store
    from panorama.identity.service import unify
    from panorama.store import open_store

    project = load_project(directory)
    if args.no_splink:
        config = project.config.model_copy(deep=True)
        object.__setattr__(config.identity.splink, "enabled", False)
        project.config = config
    with open_store(project.store_path) as store:
        store.execute(f"SET memory_limit = '{args.memory_limit}'")
        rows = store.scalar("SELECT count(*) FROM events") + store.scalar(
            "SELECT count(DISTINCT (source, record_id)) FROM records"
        )
        print(f"{customers:,} customers: {rows:,} records and events in the log")
        labels = ("unify (first run)", "unify (again: ids kept)")
        for label in labels[:1] if args.once else labels:
            started, cpu = time.perf_counter(), _cpu_seconds()
            stats = unify(store, project)
            wall = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
            own, children = _rss_mb()
            load = _load()
            print(f"\n{label}: {wall:,.1f} s wall, {rows / wall:,.0f} rows/s, {cpu:,.1f} s CPU "
                  f"(rate per CPU second {rows / cpu:,.0f}), peak RSS {own:,.0f} MB; largest child "
                  f"process {children:,.0f} MB (the normalising workers, or the ingest when it ran "
                  f"here); load average {load}")  # fmt: skip
            print("  stages: " + ", ".join(f"{k} {v:.1f}" for k, v in stats.seconds.items()))
            print(f"  signatures {stats.sigs:,}, identifiers {stats.nodes:,} ({stats.shared:,} shared), "
                  f"links {stats.links:,} ({stats.refused:,} refused), splink pairs {stats.splink_pairs:,}, "
                  f"profiles {stats.profiles:,}, merges {stats.merges:,}")  # fmt: skip
        truth = directory / "truth" / "identities.csv"
        if truth.exists():
            # the pairwise scores join 75M rows with their truth at 1M customers: 17.9 GB peak
            store.execute(f"SET memory_limit = '{args.eval_memory_limit}'")
            store.execute("SET preserve_insertion_order = false")
            started = time.perf_counter()
            s = evaluate_store(store, truth)
            print(f"\nagainst truth ({time.perf_counter() - started:.0f} s): precision {s.precision:.4f}, "
                  f"recall {s.recall:.4f}, F1 {s.f1:.4f} over {s.rows:,} rows "
                  f"({s.predicted_profiles:,} profiles for {s.true_persons:,} people)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
