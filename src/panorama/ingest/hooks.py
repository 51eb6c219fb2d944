"""Real-time hooks: what runs after events are committed to the log.

The real-time path (DESIGN.md) is: commit to log -> update the identity graph -> update
incremental traits -> re-evaluate segments -> enqueue triggered actions. Each stage
registers one hook here (in order of `stage`). Hooks must be idempotent and fast (batched).

The writer's loader thread calls `submit` with every batch of new events it committed to the
log (`panorama.ingest.writer`). In
`panorama serve` (`start_background`) that only queues the batch: one background thread
takes everything queued meanwhile as one table and runs the hooks over it in stage order, so
acknowledging events never waits for derived state, and under load many micro-batches share
one pass. Without a background runner (tests, embedded use) `submit` runs the hooks at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import pyarrow as pa

from panorama.store import Store, WriteGate

log = logging.getLogger("panorama.ingest.hooks")

# stage numbers: identity 100, consent 150, traits 300, identity-refresh 350, segments 400,
# activation 500
Hook = Callable[[Store, pa.Table], None]


@dataclass(frozen=True)
class _Registered:
    stage: int
    name: str
    fn: Hook


_hooks: list[_Registered] = []
_background: dict[int, CoalescingWorker] = {}


def register(stage: int, name: str, fn: Hook) -> None:
    """Add (or replace, by name) a hook."""
    global _hooks
    _hooks = sorted([h for h in _hooks if h.name != name] + [_Registered(stage, name, fn)],
                    key=lambda h: h.stage)  # fmt: skip


def registered() -> list[str]:
    return [h.name for h in _hooks]


def run(store: Store, events: pa.Table) -> None:
    """Run every hook over a committed batch (rows with the events table's columns). A hook
    that fails does not stop the later stages; the first error is raised after all ran."""
    first: Exception | None = None
    for hook in _hooks:
        try:
            hook.fn(store, events)
        except Exception as exc:
            log.exception("real-time hook %r failed on %d committed events (they stay stored)",
                          hook.name, events.num_rows)  # fmt: skip
            first = first or exc
    if first is not None:
        raise first


def submit(store: Store, events: pa.Table) -> None:
    """Hand a committed batch to the hooks: queued for the store's background runner when
    one is started, else run now."""
    worker = _background.get(id(store))
    if worker is None:
        run(store, events)
    else:
        worker.submit(events)


# A pass over the hooks costs a few milliseconds of queries whatever its size: under load,
# one pass per this many seconds (the batches committed meanwhile share it).
MIN_PASS_INTERVAL = 0.1


def start_background(store: Store) -> CoalescingWorker:
    """Run the hooks of this store's batches in a background thread (the server does)."""
    worker = CoalescingWorker(
        "panorama-realtime", lambda events: run(store, events), min_interval=MIN_PASS_INTERVAL,
        gate=store.gate,
    ).start()
    _background[id(store)] = worker
    return worker


def stop_background(store: Store, timeout: float = 60.0) -> None:
    """Run what is queued, then stop the store's background runner (after the writer)."""
    worker = _background.pop(id(store), None)
    if worker is not None:
        worker.stop(timeout)


def background_stats(store: Store) -> dict | None:
    worker = _background.get(id(store))
    return dict(worker.stats) if worker is not None else None


class CoalescingWorker:
    """Work handed off by the writer thread: its hook only queues the committed batch (so
    ingestion never waits for derived state); this thread takes everything queued, as one
    table, and runs `fn` on it. Under load, many micro-batches share one evaluation."""

    def __init__(self, name: str, fn, columns: list[str] | None = None, min_interval: float = 0.0,
                 gate: WriteGate | None = None):  # fmt: skip
        self.name = name
        self.fn = fn
        # each run holds the store's gate shared: a checkpoint waits for the run to end and
        # the next run for the checkpoint (`panorama.store.WriteGate`)
        self.gate = gate
        self.columns = columns
        # at most one run per `min_interval` seconds: under load, batches gather meanwhile and
        # share a run (less CPU for the same result, at the price of that much latency)
        self.min_interval = min_interval
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.stats = {"runs": 0, "batches": 0, "rows": 0, "errors": 0, "last_ms": 0.0, "max_ms": 0.0}

    def start(self) -> CoalescingWorker:
        self._thread.start()
        return self

    def submit(self, table: pa.Table) -> None:
        self._queue.put(table.select(self.columns) if self.columns else table)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        last_start = 0.0
        while True:
            first = self._queue.get()
            wait = last_start + self.min_interval - time.perf_counter()
            if wait > 0 and first is not None and not self._stop.is_set():
                time.sleep(wait)
            last_start = time.perf_counter()
            tables = [] if first is None else [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    tables.append(item)
            if tables:
                started = time.perf_counter()
                try:
                    with self.gate.shared() if self.gate else nullcontext():
                        self.fn(tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default"))
                except Exception:
                    self.stats["errors"] += 1
                    log.exception("%s: processing %d committed batches failed (the log keeps them; "
                                  "the next refresh catches up)", self.name, len(tables))  # fmt: skip
                elapsed = (time.perf_counter() - started) * 1000
                s = self.stats
                s["runs"] += 1
                s["batches"] += len(tables)
                s["rows"] += sum(t.num_rows for t in tables)
                s["last_ms"] = elapsed
                s["max_ms"] = max(s["max_ms"], elapsed)
            if self._stop.is_set() and self._queue.empty():
                return
