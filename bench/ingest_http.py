"""HTTP ingestion benchmark: `panorama serve` under a bounded loopback load, beside a bare ceiling.

    .venv/bin/python bench/ingest_http.py [--duration 5] [--connections 8] [--single-connections 64]
                                          [--sustained 30]

Starts `panorama serve` on a fresh project (durable group commits, as in production) and,
for the ceiling, a bare endpoint on the same server stack (uvicorn + httptools + uvloop)
that only reads, gunzips if needed and JSON-parses the body, then discards it. A separate
load-generator process (a minimal asyncio HTTP/1.1 keep-alive client, so the client costs
the 2-core box as little as possible and never shares the server's GIL) runs, against each:

  batch    closed loop, batches of 100 events of ~1 KB, N connections
  single   closed loop, one event per request, M connections
  half     open loop at half the measured maximum (batches, then singles): p99 latency
  sustained  (--sustained S) batches as above for S seconds (--sustained-connections: with
           more connections, to saturate the server), with the rate of every 10-s window
           and the time until all of it is queryable: does the loader keep up

and prints events/s, requests/s, p50/p99 latency, the server's peak RSS and CPU (with its
validation processes), the time until
accepted events are queryable (via GET /v1/status), and the ratio to the ceiling. It also
prints how long a fixed pure-Python loop took on this machine at the start (its speed drifts
by tens of percent between runs: compare runs by it and by the ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
PANORAMA = Path(sys.executable).parent / "panorama"
BATCH_SIZE = 100
WINDOW = 10.0  # seconds per window of the sustained run's rates

# -- the bare ceiling: parse and discard ---------------------------------------------------------

BARE_APP = """
import zlib, orjson
OK = b'{"success":true}'
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"}); return
    chunks = []
    while True:
        m = await receive()
        chunks.append(m.get("body", b""))
        if not m.get("more_body"):
            break
    body = b"".join(chunks)
    if body[:2] == b"\\x1f\\x8b":
        body = zlib.decompress(body, 47)
    status, out = 200, OK
    if scope["path"] != "/health":
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            status, out = 400, b'{"success":false,"code":"invalid_json","message":"bad"}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {timeout} s")


def _family(pid: int) -> list[int]:
    """The process and its children (the server's validation processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def peak_rss_mb(pid: int) -> float:
    """Peak RSS of the process plus its children's (each child's own peak)."""
    total = 0.0
    for member in _family(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total or float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live children (the server's validation processes)."""
    total = 0.0
    for member in _family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# -- the load generator (runs in its own process) -----------------------------------------------


def _event(i: int) -> dict:
    return {
        "type": "track",
        "event": ("Product Viewed", "Product Added", "Order Completed")[i % 3],
        "userId": f"user-{i % 5000}",
        "anonymousId": f"anon-{i % 7919:06d}-4f1c-9a7e-{i % 100:02d}",
        "messageId": "__MID__",
        "timestamp": "2024-05-01T10:00:00.123Z",
        "properties": {
            "product_id": f"sku-{i % 997}",
            "category": ("shoes", "shirts", "bags")[i % 3],
            "price": 49.99 + i % 50,
            "quantity": 1 + i % 3,
            "currency": "EUR",
            "name": "Trail running shoe, waterproof, size 42",
            "brand": "Northwind Outdoor",
            "image_url": f"https://cdn.example.com/img/sku-{i % 997}/main-800x800.jpg",
        },
        "context": {
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "ip": "203.0.113.7",
            "locale": "en-GB",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "page": {
                "url": f"https://shop.example.com/p/sku-{i % 997}?utm_source=newsletter&utm_campaign=spring",
                "path": f"/p/sku-{i % 997}",
                "referrer": "https://www.google.com/",
                "title": "Trail running shoe | Example Shop",
            },
            "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
            "screen": {"width": 1920, "height": 1080, "density": 1},
        },
    }


class Requests:
    """Request bytes with fresh messageIds, built from pre-serialised parts (cheap per request)."""

    def __init__(self, key: str, batch: bool, tag: str):
        self.counter = itertools.count()
        self.tag = tag.encode()
        auth = base64.b64encode(f"{key}:".encode()).decode()
        if batch:
            body = orjson.dumps(
                {"batch": [_event(i) for i in range(BATCH_SIZE)], "sentAt": "2024-05-01T10:00:01Z"}
            )
            self.path = "/v1/batch"
        else:
            body = orjson.dumps({**_event(1), "sentAt": "2024-05-01T10:00:01Z"})
            self.path = "/v1/track"
        self.parts = body.split(b"__MID__")
        self.events = len(self.parts) - 1
        self.head = (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()  # fmt: skip
        self.body_size = len(body) - self.events * len(b"__MID__")

    def next(self) -> bytes:
        n = next(self.counter)
        ids = [b"%s-%d-%d" % (self.tag, n, k) for k in range(self.events)]
        body = (
            b"".join(itertools.chain.from_iterable(zip(self.parts[:-1], ids, strict=True)))
            + self.parts[-1]
        )
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body


_CL = re.compile(rb"content-length:\s*(\d+)", re.I)


async def _connection(host, port, requests: Requests, stop_at: float, interval: float | None,
                      start_at: float, latencies: list, errors: list) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    next_send = start_at
    done = latencies.append
    try:
        while True:
            now = time.perf_counter()
            if interval is not None:
                if next_send > now:
                    await asyncio.sleep(next_send - now)
                    now = time.perf_counter()
                next_send += interval
            if now >= stop_at:
                break
            request = requests.next()
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(_CL.search(head).group(1))
            body = await reader.readexactly(length)
            done((t0, time.perf_counter() - t0))
            if head[9:12] != b"200":
                errors.append(head[9:12].decode() + " " + body[:200].decode(errors="replace"))
    finally:
        writer.close()


def run_load(url: str, key: str, batch: bool, connections: int, duration: float,
             rate: float | None = None, tag: str = "x") -> dict:  # fmt: skip
    """Closed loop (rate None) or open loop at `rate` requests/s; returns the figures."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    host, port = url.removeprefix("http://").split(":")
    requests = Requests(key, batch, tag)
    latencies: list[float] = []
    errors: list[str] = []

    async def main():
        start = time.perf_counter() + 0.05
        stop_at = start + duration
        interval = connections / rate if rate else None
        tasks = [
            _connection(host, int(port), requests, stop_at, interval, start + (i * interval / connections if interval else 0),
                        latencies, errors)
            for i in range(connections)
        ]  # fmt: skip
        await asyncio.gather(*tasks)
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    window_counts: dict[int, int] = {}
    first = min((t for t, _ in latencies), default=0.0)
    for t, _ in latencies:
        w = int((t - first) // WINDOW)
        window_counts[w] = window_counts.get(w, 0) + 1
    whole = [window_counts.get(w, 0) * requests.events / WINDOW for w in range(int(elapsed // WINDOW))]
    latencies = sorted(d for _, d in latencies)
    n = len(latencies)
    return {
        "windows_events_s": whole,
        "requests": n,
        "events": n * requests.events,
        "seconds": elapsed,
        "req_s": n / elapsed,
        "events_s": n * requests.events / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "max_ms": latencies[-1] * 1000 if n else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "body_bytes": requests.body_size,
        "last_tag": f"{tag}-{n}",
    }


# -- orchestration -------------------------------------------------------------------------------


def start_panorama(project: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([str(PANORAMA), "serve", "--project", str(project), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip


def start_bare(directory: Path, port: int) -> subprocess.Popen:
    (directory / "bare_app.py").write_text(BARE_APP)
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--http", "httptools",
         "--loop", "uvloop", "--no-access-log", "--log-level", "warning"],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def make_project(directory: Path) -> str:
    subprocess.run([str(PANORAMA), "init", str(directory)], check=True, capture_output=True)
    out = subprocess.run([str(PANORAMA), "keys", "create", "bench", "--project", str(directory)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


PREFILL_SQL = """
INSERT INTO events (message_id, type, event, source, user_id, anonymous_id, timestamp,
                    original_timestamp, received_at, identifiers, properties, context)
SELECT uuid()::VARCHAR, 'track', 'Product Viewed', 'prefill', 'user-' || (i % 200000),
       uuid()::VARCHAR, TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND,
       TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND, now()::TIMESTAMP,
       [{'type': 'user_id', 'value': 'user-' || (i % 200000)}],
       '{"product_id": "p-' || (i % 5000) || '", "price": 19.99, "category": "shoes"}',
       '{"ip": "203.0.113.7", "page": {"url": "https://shop.example.com/p"}}'
FROM range(?, ?) t(i)
"""


def prefill(directory: Path, events: int) -> float:
    """Give the store a log of `events` events before the server starts (seconds taken):
    ingestion costs that grow with the log show only on a log of some size."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(str(directory / "panorama.duckdb"))
    for start in range(0, events, 1_000_000):
        con.execute(PREFILL_SQL, [start, min(start + 1_000_000, events)])
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


def calibration_seconds() -> float:
    """Seconds for a fixed pure-Python loop (10M additions): this machine's speed right now."""
    started = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    return time.perf_counter() - started


def status(url: str, key: str) -> dict:
    return httpx.get(url + "/v1/status", auth=(key, ""), timeout=10).json()


def queryable_delay(url: str, key: str, expected: int, timeout: float = 10.0) -> float:
    """Seconds from now until /v1/status counts `expected` events (0 when already there)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if status(url, key)["events"] >= expected:
            return time.perf_counter() - start
        time.sleep(0.01)
    return float("inf")


def measured_load(pool, pid, url, key, batch, connections, duration, rate, tag) -> dict:
    """`run_load` in the load process; the result also gets the server's CPU per event."""
    before = cpu_seconds(pid)
    result = pool.submit(run_load, url, key, batch, connections, duration, rate, tag).result()
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["events"], 1) * 1e6
    return result


def scenario_suite(pool, url, key, args, tag, pid) -> dict:
    """The four scenarios against one server."""

    def run(name, batch, connections, rate):
        return measured_load(pool, pid, url, key, batch, connections, args.duration, rate, tag + name)

    results = {"batch": run("b", True, args.connections, None),
               "single": run("s", False, args.single_connections, None)}  # fmt: skip
    results["half_batch"] = run("hb", True, args.connections, results["batch"]["req_s"] / 2)
    results["half_single"] = run(
        "hs", False, args.single_connections, results["single"]["req_s"] / 2
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent connections for batches"
    )
    parser.add_argument(
        "--single-connections",
        type=int,
        default=64,
        help="concurrent connections for single events",
    )
    parser.add_argument("--sustained", type=float, default=30.0,
                        help="then S seconds of batches alone, with the rate per 10-s window (default 30; 0: none)")  # fmt: skip
    parser.add_argument("--sustained-connections", type=int, default=None,
                        help="connections of the sustained run (default: --connections)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--prefill", type=int, default=0,
                        help="events already in the log when the server starts (default 0)")  # fmt: skip
    args = parser.parse_args()

    load_before = f"{os.getloadavg()[0]:.2f}"
    calibration = calibration_seconds()
    work = Path(tempfile.mkdtemp(prefix="panorama-bench-"))
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    procs: list[subprocess.Popen] = []
    try:
        project = work / "project"
        key = make_project(project)
        if args.prefill:
            took = prefill(project, args.prefill)
            print(f"log prefilled with {args.prefill:,} events in {took:.1f} s", flush=True)

        port = free_port()
        bare = start_bare(work, port)
        procs.append(bare)
        bare_url = f"http://127.0.0.1:{port}"
        wait_ready(bare_url, bare)
        pool.submit(run_load, bare_url, key, True, 2, 0.5, None, "warm").result()
        t_cpu = cpu_seconds(bare.pid)
        ceiling = scenario_suite(pool, bare_url, key, args, "c", bare.pid)
        ceiling_cpu = cpu_seconds(bare.pid) - t_cpu
        bare.send_signal(signal.SIGINT)
        bare.wait(10)

        port = free_port()
        server = start_panorama(project, port)
        procs.append(server)
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        wait_ready(url, server)
        startup = time.perf_counter() - t0
        warm = pool.submit(run_load, url, key, True, 2, 0.5, None, "warm").result()
        t_cpu = cpu_seconds(server.pid)
        panorama = scenario_suite(pool, url, key, args, "p", server.pid)
        panorama_cpu = cpu_seconds(server.pid) - t_cpu
        # every 200 above was a commit: the events must be countable at once
        expected = sum(r["events"] for r in panorama.values()) + warm["events"]
        delay = queryable_delay(url, key, expected)
        # and a fresh batch: time from its 200 to being counted
        fresh = pool.submit(run_load, url, key, True, 1, 0.2, None, "q").result()
        delay_fresh = queryable_delay(url, key, expected + fresh["events"])
        sustained = None
        if args.sustained:
            sustained = measured_load(pool, server.pid, url, key, True,
                                      args.sustained_connections or args.connections, args.sustained, None, "sus")  # fmt: skip
            expected += fresh["events"] + sustained["events"]
            sustained["queryable_s"] = queryable_delay(url, key, expected, timeout=60)
        stats = status(url, key)
        rss = peak_rss_mb(server.pid)
        server.send_signal(signal.SIGINT)
        server.wait(30)
    finally:
        pool.shutdown()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nHTTP ingestion, loopback, {os.cpu_count()} CPUs (load average {load_before} before, "
          f"{os.getloadavg()[0]:.2f} after: other processes share them), {args.duration:.0f} s per scenario; "
          f"{ceiling['batch']['body_bytes'] // BATCH_SIZE} B per event, batches of {BATCH_SIZE}")  # fmt: skip
    print(f"connections: {args.connections} (batches), {args.single_connections} (single events); "
          "the load generator is a separate process on the same 2 cores")  # fmt: skip
    print(f"machine speed: a pure-Python loop of 10M additions took {calibration:.2f} s before the runs\n")
    header = (f"{'scenario':<28}{'events/s':>10}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
              f"{'errors':>7}{'server CPU µs/event':>21}")  # fmt: skip
    print(header)
    print("-" * len(header))
    names = {"batch": "batches of 100, max", "single": "single events, max",
             "half_batch": "batches at half max", "half_single": "single at half max"}  # fmt: skip
    for label, results in (("ceiling (parse+discard)", ceiling), ("panorama (durable)", panorama)):
        print(label)
        for key_, name in names.items():
            r = results[key_]
            print(f"  {name:<26}{r['events_s']:>10,.0f}{r['req_s']:>9,.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}"
                  f"{r['max_ms']:>8.1f}{r['errors']:>7}{r['cpu_us']:>21.1f}")  # fmt: skip
            if r["first_error"]:
                print(f"    first error: {r['first_error']}")
    print()
    for key_, name in (("batch", "batches of 100"), ("single", "single events")):
        ratio = panorama[key_]["events_s"] / ceiling[key_]["events_s"]
        print(f"ratio to ceiling, {name}: {ratio:.0%}")
    w = stats["writer"]
    print(f"server peak RSS: {rss:,.0f} MB; startup {startup:.1f} s; server CPU {panorama_cpu:.1f} s "
          f"(ceiling {ceiling_cpu:.1f} s)")  # fmt: skip
    print(f"journal writes (one fsync per group of requests): {w['journal_writes']:,}, largest group "
          f"{w['max_group_rows']:,} rows, slowest {w['max_journal_ms']:.0f} ms")  # fmt: skip
    print(f"loads into DuckDB: {w['commits']:,} for {w['rows']:,} rows (mean {w['rows'] / max(w['commits'], 1):,.0f}), "
          f"slowest {w['max_commit_ms']:.0f} ms; checkpoints {w['checkpoints']} (failed tries {w['checkpoint_retries']}), "
          f"WAL {w['wal_bytes'] / 2**20:.0f} MB at the end")  # fmt: skip
    print(f"queryable after acceptance: {delay * 1000:.0f} ms for the whole load (counted {stats['events']:,}), "
          f"{delay_fresh * 1000:.0f} ms for a fresh batch (200 = committed)")  # fmt: skip
    if sustained:
        windows = sustained["windows_events_s"]
        print(f"sustained batches, {args.sustained_connections or args.connections} connections, "
              f"{args.sustained:.0f} s: {sustained['events_s']:,.0f} events/s "
              f"(10-s windows: {', '.join(f'{x / 1000:.1f}k' for x in windows)}), p50 {sustained['p50_ms']:.1f} ms, "
              f"p99 {sustained['p99_ms']:.1f} ms, max {sustained['max_ms']:.0f} ms, errors {sustained['errors']}, "
              f"server CPU {sustained['cpu_us']:.1f} µs/event; all of it queryable {sustained['queryable_s']:.2f} s "
              "after its last 200")  # fmt: skip
    targets = [
        ("≥ 50,000 events/s in batches of 100", panorama["batch"]["events_s"] >= 50_000),
        ("≥ 5,000 single-event requests/s", panorama["single"]["req_s"] >= 5_000),
        ("p99 < 50 ms at half max (batches)", panorama["half_batch"]["p99_ms"] < 50),
        ("p99 < 50 ms at half max (single)", panorama["half_single"]["p99_ms"] < 50),
        ("queryable ≤ 2 s after acceptance", max(delay, delay_fresh) <= 2),
    ]
    if sustained:
        targets.append((f"≥ 50,000 events/s sustained for {args.sustained:.0f} s", sustained["events_s"] >= 50_000))
        targets.append(("queryable ≤ 2 s after the sustained load", sustained["queryable_s"] <= 2))
    print("targets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets))


if __name__ == "__main__":
    main()
