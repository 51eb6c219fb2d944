"""Soak: ingestion, profile reads and segment evaluation at once against `panorama serve`.

    .venv/bin/python bench/soak.py [--duration 180] [--customers 300] [--rate 200]
    nice -n 5 .venv/bin/python bench/soak.py --population fixed --duration 900 --sample-every 30

Builds a demo project (`panorama demo generate` + the batch pipeline, with three segments),
serves it, and for `--duration` seconds runs on loopback, concurrently:

  ingest    batches of 20 Segment events at `--rate` events/s (open loop) for known and new
            people — each batch also re-evaluates the real-time segments of its profiles.
            `--population grow` (default): 20% of events come from new people ("soak-N"), so
            the identity graph and profiles grow; `--population fixed`: every event comes
            from a person the demo already holds, so only the event log grows
  profiles  GET /api/v1/profiles/{id} (the 360° view) in a closed loop, 2 connections
  segments  GET /api/v1/segments and /segments/{name}/members in a closed loop, 1 connection
            (`--profile-connections 0 --segment-connections 0`: ingestion alone, a baseline)

It samples the server's RSS every second and prints, per workload, requests/s, events/s,
errors and p50/p99 latency; the RSS at start, end and peak and its trend (least-squares
slope over the second half, MB/min); and, after a clean stop, whether every acknowledged
event is in the store exactly once.

Every `--sample-every` seconds it also reads GET /api/v1/server/memory (the process's RSS
and RssAnon, the Python heap as pymalloc blocks and objects the collector tracks, DuckDB's
own accounting by tag) and the events stored, and prints them as a table with the slopes
over the first and second half of RSS, of DuckDB's memory and of the rest (RSS - DuckDB):
DuckDB's buffer pool holding more of a growing file is data growth, bounded by its
memory_limit; growth in the rest is the Python side (or the allocators) and would be a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from panorama.demo.project import add_segments

PANORAMA = str(Path(sys.executable).parent / "panorama")
SEGMENTS = {
    "buyers": "orders >= 1",
    "big": "revenue > 100",
    "lapsed": "days_since(last_seen_at) > 180",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str) -> str:
    done = subprocess.run([PANORAMA, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"panorama {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (r - mr) for t, r in samples) / var if var else 0.0


def sample_memory(url: str, token: str, key: str, every: float, stop: threading.Event,
                  rows: list[dict]) -> None:  # fmt: skip
    """Every `every` s: the server's own memory report and the events it holds."""
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as client:
        while True:
            try:
                mem = client.get("/api/v1/server/memory",
                                 headers={"authorization": f"Bearer {token}"}).json()  # fmt: skip
                events = client.get("/v1/status", auth=(key, "")).json()["events"]
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                print(f"memory sample failed: {exc!r}", file=sys.stderr)
            else:
                rows.append({"t": time.monotonic() - start, "load": os.getloadavg()[0],
                             "events": events, **mem})  # fmt: skip
            if stop.wait(every):
                return


def memory_table(rows: list[dict]) -> None:
    """The server's memory over time (MB) and its slopes over the first and second half.

    DuckDB = duckdb_memory() (its buffer manager's accounting); je = the jemalloc DuckDB
    allocates from (alloc: live, res: resident, freed pages it still holds included); malloc =
    glibc (Python's objects over 512 bytes, NumPy/pandas buffers; free: freed but held);
    other = RssAnon - je res: everything that is not DuckDB's (Python, glibc, Arrow)."""
    print("\n    t  load   events(src)      file       WAL   RSS  RssAnon DuckDB je alloc je res"
          "  malloc free  other  py blocks gc objs  DuckDB by tag")  # fmt: skip

    def other(r: dict) -> float:
        return r["process"]["rss_anon_mb"] - r["allocators"].get("jemalloc_resident_mb", 0.0)

    for r in rows:
        p, d, py, a = r["process"], r["duckdb"], r["python"], r["allocators"]
        tags = " ".join(
            f"{k}={v:.0f}" for k, v in sorted(d["by_tag_mb"].items(), key=lambda kv: -kv[1])[:3]
        )
        print(f"{r['t']:5.0f} {r['load']:5.2f} {r['events']:13,} {d['database_size']:>9} {d['wal_size']:>9}"
              f" {p['rss_mb']:5.0f} {p['rss_anon_mb']:8.0f} {d['total_mb']:6.0f}"
              f" {a.get('jemalloc_allocated_mb', 0):8.0f} {a.get('jemalloc_resident_mb', 0):6.0f}"
              f" {a.get('malloc_in_use_mb', 0):7.0f} {a.get('malloc_free_mb', 0):4.0f} {other(r):6.0f}"
              f" {py['allocated_blocks'] / 1000:9.0f}k {py['gc_objects'] / 1000:6.0f}k  {tags}")  # fmt: skip
    if len(rows) < 6:
        return
    end = rows[-1]["t"]
    series = {
        "RSS": lambda r: r["process"]["rss_mb"],
        "RssAnon": lambda r: r["process"]["rss_anon_mb"],
        "DuckDB (duckdb_memory)": lambda r: r["duckdb"]["total_mb"],
        "jemalloc allocated": lambda r: r["allocators"].get("jemalloc_allocated_mb", 0.0),
        "jemalloc resident": lambda r: r["allocators"].get("jemalloc_resident_mb", 0.0),
        "malloc in use": lambda r: r["allocators"].get("malloc_in_use_mb", 0.0),
        "other (RssAnon - je res)": other,
        "Python blocks (k/min)": lambda r: r["python"]["allocated_blocks"] / 1000,
        "gc objects (k/min)": lambda r: r["python"]["gc_objects"] / 1000,
    }
    print("\nslope (MB/min unless said)   first half   second half")
    for name, f in series.items():
        first = [(r["t"], f(r)) for r in rows if r["t"] <= end / 2]
        second = [(r["t"], f(r)) for r in rows if r["t"] >= end / 2]
        print(f"{name:27} {slope_mb_per_min(first):+11.2f}  {slope_mb_per_min(second):+12.2f}")
    lo, hi = rows[0], rows[-1]
    if "containers" in hi:
        before = {c["where"]: c["len"] for c in lo.get("containers", [])}
        print("largest Python containers (len at the first and last sample): " + "; ".join(
            f"{c['where']} {before.get(c['where'], '-')} -> {c['len']:,}" for c in hi["containers"]))  # fmt: skip
    print(f"DuckDB memory_limit {hi['duckdb']['limit']}; events (this source) {lo['events']:,} -> "
          f"{hi['events']:,}; file {lo['duckdb']['database_size']} -> {hi['duckdb']['database_size']}")  # fmt: skip


class Stats:
    def __init__(self, name: str):
        self.name = name
        self.latencies: list[float] = []
        self.errors = 0
        self.events = 0
        self.error_kinds: dict[str, int] = {}

    def ok(self, seconds: float, events: int = 0) -> None:
        self.latencies.append(seconds)
        self.events += events

    def fail(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def line(self, duration: float) -> str:
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

        events = f"{self.events / duration:8,.0f} events/s" if self.events else " " * 17
        return (
            f"{self.name:9} {len(lat) / duration:8,.1f} req/s {events}  p50 {q(0.5):7.1f} ms  "
            f"p99 {q(0.99):7.1f} ms  errors {self.errors}"
            + (f" {self.error_kinds}" if self.errors else "")
        )


async def ingest(url: str, key: str, users: list[str], rate: float, until: float, stats: Stats,
                 acked: list, new_share: float = 0.2) -> None:  # fmt: skip
    batch_size = 20
    interval = batch_size / rate
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=30) as client:
        next_at = time.monotonic()
        pending: set[asyncio.Task] = set()

        async def send() -> None:
            ids = [uuid.uuid4().hex for _ in range(batch_size)]
            batch = []
            for mid in ids:
                user = (
                    random.choice(users)
                    if random.random() >= new_share
                    else f"soak-{random.randrange(10**6)}"
                )
                kind = random.random()
                if kind < 0.1:
                    batch.append(
                        {
                            "type": "identify",
                            "userId": user,
                            "messageId": mid,
                            "traits": {"plan": random.choice(["free", "pro"])},
                        }
                    )
                elif kind < 0.3:
                    batch.append(
                        {
                            "type": "track",
                            "userId": user,
                            "event": "Order Completed",
                            "messageId": mid,
                            "properties": {
                                "revenue": round(random.uniform(5, 200), 2),
                                "order_id": mid,
                            },
                        }
                    )
                else:
                    batch.append({"type": "page", "userId": user, "name": "Home", "messageId": mid})
            started = time.monotonic()
            try:
                r = await client.post("/v1/batch", json={"batch": batch})
            except httpx.HTTPError as exc:
                stats.fail(type(exc).__name__)
                return
            if r.status_code == 200 and r.json().get("success"):
                stats.ok(time.monotonic() - started, len(batch))
                acked.extend(ids)
            else:
                stats.fail(str(r.status_code))

        while time.monotonic() < until:
            task = asyncio.create_task(send())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.gather(*pending)


async def reads(url: str, headers: dict, paths, until: float, stats: Stats) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            path = paths()
            started = time.monotonic()
            try:
                r = await client.get(path)
            except httpx.HTTPError as exc:
                stats.fail(type(exc).__name__)
                continue
            if r.status_code in (200, 404):
                stats.ok(time.monotonic() - started)
            else:
                stats.fail(str(r.status_code))


async def load(url: str, key: str, token: str, users: list[str], profiles: list[str], segments: list[str],
               duration: float, rate: float, profile_connections: int = 2,
               segment_connections: int = 1, new_share: float = 0.2) -> tuple[list[Stats], list[str]]:  # fmt: skip
    until = time.monotonic() + duration
    s_ingest, s_profiles, s_segments = Stats("ingest"), Stats("profiles"), Stats("segments")
    acked: list[str] = []
    headers = {"authorization": f"Bearer {token}"}

    def profile_path() -> str:
        return f"/api/v1/profiles/{random.choice(profiles)}"

    def segment_path() -> str:
        if random.random() < 0.3:
            return "/api/v1/segments"
        return (
            f"/api/v1/segments/{random.choice(segments)}/members?limit=200"
            if segments
            else "/api/v1/segments"
        )

    await asyncio.gather(
        ingest(url, key, users, rate, until, s_ingest, acked, new_share),
        *(reads(url, headers, profile_path, until, s_profiles) for _ in range(profile_connections)),
        *(reads(url, headers, segment_path, until, s_segments) for _ in range(segment_connections)),
    )
    return [s_ingest, s_profiles, s_segments], acked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=180.0, help="seconds of load (default 180)"
    )
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument(
        "--rate", type=float, default=200.0, help="ingested events per second (default 200)"
    )
    parser.add_argument(
        "--profile-connections", type=int, default=2, help="closed-loop profile readers (0: none)"
    )
    parser.add_argument(
        "--segment-connections", type=int, default=1, help="closed-loop segment readers (0: none)"
    )
    parser.add_argument(
        "--no-segments",
        action="store_true",
        help="no segments (a baseline for real-time evaluation)",
    )
    parser.add_argument(
        "--population",
        choices=("grow", "fixed"),
        default="grow",
        help="grow: 20%% of events from new people; fixed: only people the demo holds",
    )
    parser.add_argument(
        "--sample-every",
        type=float,
        default=30.0,
        help="seconds between memory reports from the server (0: none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the project directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="panorama-soak-"))
    project = work / "project"
    t0 = time.monotonic()
    run("demo", "generate", str(project), "--customers", str(args.customers), "--seed", "5")
    if not args.no_segments:
        add_segments(project / "panorama.yaml", SEGMENTS)
    for step in (
        ["ingest"],
        ["unify"],
        ["traits", "compute"],
        *([] if args.no_segments else [["segments", "refresh"]]),
    ):
        run(*step, "--project", str(project))
    key = run("keys", "create", "soak", "--project", str(project)).split()
    key = next(w for w in key if w.startswith("pk_"))
    token_out = run("tokens", "create", "soak", "--role", "analyst", "--project", str(project))
    token = next(w for w in token_out.split() if w.startswith("pat_"))

    import duckdb

    con = duckdb.connect(str(project / "panorama.duckdb"), read_only=True)
    users = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL"
        ).fetchall()
    ]
    profiles = [
        r[0]
        for r in con.execute(
            "SELECT profile_id FROM identity_profiles WHERE status = 'active'"
        ).fetchall()
    ]
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    print(
        f"project: {args.customers} customers, {before:,} events, {len(profiles):,} profiles "
        f"(built in {time.monotonic() - t0:.0f} s); load average {os.getloadavg()[0]:.2f}"
    )

    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([PANORAMA, "serve", "--project", str(project), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            sys.exit("the server did not start; see " + str(work / "server.log"))
        time.sleep(0.1)
    time.sleep(2)  # start-up work (segment runtime, consent rebuild) settles

    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not stop.wait(1.0):
            samples.append((time.monotonic() - start, rss_mb(server.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    rss_start = rss_mb(server.pid)
    sampler.start()
    memory_rows: list[dict] = []
    mem_sampler = threading.Thread(target=sample_memory, daemon=True,
                                   args=(url, token, key, args.sample_every, stop, memory_rows))  # fmt: skip
    if args.sample_every > 0:
        mem_sampler.start()
    segment_names = [] if args.no_segments else ["buyers", "big", "lapsed"]
    stats, acked = asyncio.run(load(url, key, token, users, profiles, segment_names,
                                    args.duration, args.rate, args.profile_connections,
                                    args.segment_connections,
                                    0.2 if args.population == "grow" else 0.0))  # fmt: skip
    stop.set()
    sampler.join()
    if args.sample_every > 0:
        mem_sampler.join()
    load_avg = os.getloadavg()
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    log.close()

    con = duckdb.connect(str(project / "panorama.duckdb"), read_only=True)
    import pyarrow as pa

    con.register("acked", pa.table({"id": pa.array(acked, pa.string())}))  # row by row: ~1k/s
    stored = con.execute(
        "SELECT count(*) FROM events e JOIN acked a ON a.id = e.message_id"
    ).fetchone()[0]
    con.close()

    print(
        f"\nsoak: {args.duration:.0f} s, population {args.population}; load average during the run {load_avg[0]:.2f} / {load_avg[1]:.2f} (1/5 min)"
    )
    for s in stats:
        print(s.line(args.duration))
    half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
    peak = max((r for _, r in samples), default=rss_start)
    print(
        f"server RSS: start {rss_start:.0f} MB, end {samples[-1][1] if samples else rss_start:.0f} MB, "
        f"peak {peak:.0f} MB; trend over the second half {slope_mb_per_min(half):+.2f} MB/min"
    )
    memory_table(memory_rows)
    errors = sum(s.errors for s in stats)
    print(
        f"acknowledged events {len(acked):,}; in the store exactly once: {stored:,}"
        f" ({'all' if stored == len(acked) else 'MISSING ' + str(len(acked) - stored)}); errors {errors}"
    )
    if args.keep:
        print(f"project kept in {project}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
