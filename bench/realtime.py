"""Real-time latency: from an event accepted by the HTTP API to the webhook it triggers.

    .venv/bin/python bench/realtime.py [--probes 300] [--load 2000] [--history 100000]

Starts `panorama serve` (a subprocess, production settings) on a project with segments and
triggers, a local webhook receiver in this process, and a background load of other events
(product views and orders from many customers, in batches of 100 through /v1/batch) that
every micro-batch re-evaluates segments for. Then it sends probe events (`Bench Ping`, one
per request through /v1/track) whose trigger posts a signed webhook, and measures, per probe:

- **accepted -> received**: from the API's 200 answer to the webhook arriving (the target:
  p95 < 1 s);
- **sent -> received**: from sending the request (includes the API's own time).

The store starts with `--history` older events (so segment evaluation reads a real log).
Prints p50/p95/p99/max, the background rate achieved and the machine's load.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import yaml

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.bad_signatures = 0
        receiver = self
        from panorama.activate.destinations import verify_signature

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.perf_counter()
                if not verify_signature(SECRET, body, self.headers.get("X-Panorama-Timestamp", ""),
                                        self.headers.get("X-Panorama-Signature", "")):  # fmt: skip
                    receiver.bad_signatures += 1
                payload = orjson.loads(body)
                ping = ((payload.get("event") or {}).get("properties") or {}).get("ping")
                if ping is not None:
                    receiver.arrivals.setdefault(str(ping), now)
                receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def make_project(directory: Path, hook_url: str, history: int) -> str:
    config = {
        "name": "bench-realtime",
        "segments": {
            "buyers": "performed('Order Completed')",
            "returning": "performed('Order Completed') >= 2",
            "big_spenders": "performed('Order Completed', where='revenue >= 100')",
            "recent_viewers": {"where": "performed('Product Viewed', within='1h')", "recheck_every": "60s"},
            "vip": "plan = 'vip'",
        },
        "triggers": {
            "ping": {"event": "Bench Ping", "destinations": "hook"},
            "second_order": {"segment": "returning", "on": "enter", "destinations": "hook"},
        },
        "destinations": {"hook": {"type": "webhook", "url": hook_url, "secret": SECRET, "timeout": "5s"}},
    }
    (directory / "panorama.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    from panorama.config import load_project
    from panorama.ingest.keys import create_key
    from panorama.ingest.log import append_events, events_table
    from panorama.ingest.segment import normalize_message
    from panorama.store import open_store

    with open_store(load_project(directory).store_path) as store:
        key = create_key(store, "web")[1]
        rng = random.Random(1)
        start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=200)
        step = 200 * 86400 / max(history, 1)  # spread over the 200 days before now
        chunk = []
        for i in range(history):
            user = f"user-{rng.randrange(max(history // 20, 1))}"
            at = start + timedelta(seconds=i * step)
            if rng.random() < 0.05:
                msg = {"type": "identify", "userId": user, "traits": {"plan": rng.choice(["vip", "free", "pro"]),
                                                                       "email": f"{user}@example.com"}}
            else:
                event = "Order Completed" if rng.random() < 0.2 else "Product Viewed"
                msg = {"type": "track", "userId": user, "event": event,
                       "properties": {"revenue": rng.choice([20, 60, 150]), "product_id": f"p{rng.randrange(500)}"}}
            msg.update(messageId=f"h{i}", timestamp=at.isoformat() + "Z")
            chunk.append(normalize_message(msg, source="web", received_at=at))
            if len(chunk) == 20_000:
                append_events(store.cursor(), events_table(chunk))
                chunk = []
        if chunk:
            append_events(store.cursor(), events_table(chunk))
    return key


def background(url: str, key: str, rate: float, stop: threading.Event, sent: list[int], users: int,
               seed: int) -> None:
    """Batches of 100 events at about `rate` events/s (one connection)."""
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    rng = random.Random(seed)
    with httpx.Client(timeout=30, headers={"Authorization": auth}) as client:
        interval = 100 / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            batch = []
            for _ in range(100):
                user = f"user-{rng.randrange(users)}"
                if rng.random() < 0.1:
                    batch.append({"type": "track", "userId": user, "event": "Order Completed",
                                  "messageId": str(uuid.uuid4()),
                                  "properties": {"revenue": rng.choice([20, 60, 150]), "order_id": str(uuid.uuid4())}})
                else:
                    batch.append({"type": "track", "userId": user, "event": "Product Viewed",
                                  "messageId": str(uuid.uuid4()), "properties": {"product_id": f"p{rng.randrange(500)}"}})
            try:
                if client.post(url + "/v1/batch", content=orjson.dumps({"batch": batch})).status_code == 200:
                    sent[0] += len(batch)
            except httpx.HTTPError:
                pass
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.perf_counter()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--load", type=float, default=2000, help="background events per second")
    parser.add_argument("--history", type=int, default=100_000, help="older events in the store")
    parser.add_argument("--users", type=int, default=5000, help="customers in the background load")
    parser.add_argument("--senders", type=int, default=4, help="background connections")
    args = parser.parse_args()

    receiver = Receiver()
    workdir = Path(tempfile.mkdtemp(prefix="panorama-bench-rt-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"preparing a project with {args.history:,} past events in {workdir} ...", flush=True)
    key = make_project(workdir, f"http://127.0.0.1:{receiver.port}/hook", args.history)
    log = open(workdir / "serve.log", "ab")  # noqa: SIM115
    server = subprocess.Popen([str(Path(sys.executable).parent / "panorama"), "serve", "--project", str(workdir),
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("the server did not start; see", workdir / "serve.log")
                return 1
            time.sleep(0.1)
        time.sleep(1.0)  # the segments start-up refresh
        stop = threading.Event()
        sent = [0]
        loads = [threading.Thread(target=background, daemon=True,
                                  args=(url, key, args.load / args.senders, stop, sent, args.users, n))
                 for n in range(args.senders)]  # fmt: skip
        for load in loads:
            load.start()
        time.sleep(2.0)  # warm up under load
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        sent_at: dict[str, float] = {}
        accepted_at: dict[str, float] = {}
        load_start, load_sent = time.perf_counter(), sent[0]
        cpu_start = os.times()
        with httpx.Client(timeout=30, headers={"Authorization": auth}) as client:
            for i in range(args.probes):
                ping = f"{i}"
                body = orjson.dumps({"type": "track", "userId": f"pinger-{i % 50}", "event": "Bench Ping",
                                     "messageId": str(uuid.uuid4()), "properties": {"ping": ping}})  # fmt: skip
                sent_at[ping] = time.perf_counter()
                response = client.post(url + "/v1/track", content=body)
                accepted_at[ping] = time.perf_counter()
                if response.status_code != 200:
                    print("probe rejected:", response.status_code, response.text)
                time.sleep(args.interval)
        wait_until = time.perf_counter() + 15
        while len(receiver.arrivals) < args.probes and time.perf_counter() < wait_until:
            time.sleep(0.05)
        load_seconds = time.perf_counter() - load_start
        load_rate = (sent[0] - load_sent) / load_seconds
        stop.set()
        for load in loads:
            load.join(10)
        got = [p for p in sent_at if p in receiver.arrivals]
        from_accept = [(receiver.arrivals[p] - accepted_at[p]) * 1000 for p in got]
        from_send = [(receiver.arrivals[p] - sent_at[p]) * 1000 for p in got]
        try:
            status = httpx.get(url + "/v1/status", headers={"Authorization": auth}, timeout=5).json()
        except Exception:  # noqa: BLE001 - informational only
            status = {}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        receiver.server.shutdown()
    print()
    print(f"probes: {len(got)}/{args.probes} webhooks received "
          f"(bad signatures: {receiver.bad_signatures}; all webhooks: {receiver.count})")  # fmt: skip
    print(f"background load: {load_rate:,.0f} events/s achieved (asked {args.load:,.0f}/s, "
          f"{args.users:,} customers), {args.history:,} events in the store before")  # fmt: skip
    for title, values in (("accepted -> webhook received", from_accept), ("sent -> webhook received", from_send)):
        if values:
            print(f"{title:30s} p50 {pct(values, 50):7.1f} ms   p95 {pct(values, 95):7.1f} ms   "
                  f"p99 {pct(values, 99):7.1f} ms   max {max(values):7.1f} ms   mean {statistics.mean(values):6.1f} ms")
    if status.get("writer"):
        w = status["writer"]
        print(f"writer: {w['commits']:,} commits, max commit {w['max_commit_ms']} ms, hook errors {w['hook_errors']}")
    cpu = os.times()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"bench process CPU {cpu.user - cpu_start.user + cpu.system - cpu_start.system:.1f} s")
    ok = from_accept and pct(from_accept, 95) < 1000
    print("target p95 < 1 s:", "met" if ok else "NOT met")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
