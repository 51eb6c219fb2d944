"""Segments in the running server: the real-time hook (stage 400) and the clock.

- **Events**: the stage-400 hook only hands each committed micro-batch to the segments
  thread (ingestion never waits for it), which takes every batch queued meanwhile as one: the
  profiles those events belong to are re-evaluated against every live segment with the same
  compiled SQL as the batch refresh, restricted to those profile ids; entries and exits are
  written (and their triggers enqueued) in one transaction.
- **The clock**: a thread re-evaluates segments whose conditions change with time alone
  (`performed(..., within=...)`, `now()`, `days_since()`, ...) every `recheck_every` (default
  60 s) over all profiles, so a customer enters "lapsed" within a minute of it becoming true.
  At start-up it backfills new or changed definitions and runs one full refresh (catching up
  with anything ingested while the server was down); then a full refresh every
  `FULL_REFRESH_EVERY` (profile merges, new attributes, traits recomputed in batch).

One lock serialises membership writes between the segments thread and the clock; the clock's
expensive all-profile evaluation runs outside it (see `engine.refresh`).
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa

from panorama.ingest import hooks
from panorama.ingest.hooks import CoalescingWorker
from panorama.ingest.log import utcnow
from panorama.segments import engine
from panorama.segments.engine import SegmentSet
from panorama.store import Store

log = logging.getLogger("panorama.segments")

STAGE = 400
FULL_REFRESH_EVERY = 3600.0
CATALOG_REFRESH_EVERY = 300.0  # new attribute keys and trait columns become usable
CATALOG_RETRY_EVERY = 30.0  # sooner while some segment names a column not seen yet
CLOCK_TICK = 0.25
# at most one real-time evaluation per this many seconds (batches committed meanwhile share it)
MIN_INTERVAL = 0.2

_runtimes: dict[int, Runtime] = {}


class Runtime:
    def __init__(self, store: Store, config):
        self.store = store
        self.config = config
        self.lock = threading.Lock()
        self.segset: SegmentSet = SegmentSet.build(store, config)
        for message in self.segset.errors.values():
            log.error("%s (this segment is not evaluated)", message)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked: dict[str, float] = {}
        self._full_at = 0.0
        self._catalog_at = time.monotonic()
        self.stats = {"batches": 0, "changes": 0, "clock_runs": 0, "errors": 0, "last_ms": 0.0}
        self.ready = threading.Event()  # set after the start-up refresh

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Runtime:
        _runtimes[id(self.store)] = self
        self.worker = CoalescingWorker(
            "panorama-segments-rt", self.on_events, min_interval=MIN_INTERVAL, gate=self.store.gate
        ).start()
        hooks.register(STAGE, "segments", on_events)
        self._thread = threading.Thread(target=self._clock, name="panorama-segments-clock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.worker.stop()
        if self._thread is not None:
            self._thread.join(30)
        _runtimes.pop(id(self.store), None)

    # -- real time ---------------------------------------------------------------------------

    def on_events(self, events: pa.Table) -> list[engine.Change]:
        started = time.perf_counter()
        cur = self.store.cursor()
        name = "_seg_rt_events"
        with self.lock:
            segset = self.segset
            cur.register(name, events)
            try:
                changes = engine.evaluate_profiles(
                    self.store, segset, segset.catalog.affected_sql(name), utcnow(), "realtime", cur
                )
            finally:
                cur.unregister(name)
        self.stats["batches"] += 1
        self.stats["changes"] += len(changes)
        self.stats["last_ms"] = (time.perf_counter() - started) * 1000
        return changes

    # -- the clock ---------------------------------------------------------------------------

    def refresh_now(self, names: list[str] | None = None, by: str = "batch") -> engine.RefreshResult:
        return engine.refresh(self.store, self.segset, names, by=by, lock=self.lock)

    def apply_config(self, config, names: list[str]) -> engine.RefreshResult:
        """Take a new configuration (a segment saved from the UI: `segments.editor`) and
        backfill the segments `names`; from then on they are evaluated in real time."""
        segset = SegmentSet.build(self.store, config, catalog=self.segset.catalog)
        with self.lock:
            self.config = config
            self.segset = segset
        return self.refresh_now(names, by="batch")

    def _clock(self) -> None:
        try:
            self.refresh_now(by="batch")  # backfill new definitions, catch up with the log
            self._full_at = time.monotonic()
        except Exception:
            self.stats["errors"] += 1
            log.exception("segments: the start-up refresh failed")
        self.ready.set()
        while not self._stop.wait(CLOCK_TICK):
            try:
                self._tick()
            except Exception:
                self.stats["errors"] += 1
                log.exception("segments: a clock refresh failed")

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._catalog_at >= CATALOG_REFRESH_EVERY or (
            self.segset.errors and now - self._catalog_at >= CATALOG_RETRY_EVERY
        ):
            self._catalog_at = now
            segset = SegmentSet.build(self.store, self.config)
            before = set(self.segset.compiled)
            with self.lock:
                self.segset = segset
            if added := sorted(set(segset.compiled) - before):  # a segment became valid: backfill it
                self.refresh_now(added, by="batch")
        if now - self._full_at >= FULL_REFRESH_EVERY:
            self._full_at = now
            self.refresh_now(by="batch")
            return
        due = []
        for name in self.segset.time_dependent():
            every = self.config.segments[name].recheck_every
            if now - self._checked.get(name, 0.0) >= every:
                due.append(name)
        if due:
            for name in due:
                self._checked[name] = now
            result = self.refresh_now(due, by="clock")
            self.stats["clock_runs"] += 1
            if result.changes:
                log.info("segments clock: %d entries, %d exits in %.2f s", sum(result.entered.values()),
                         sum(result.exited.values()), result.seconds)  # fmt: skip


def on_events(store: Store, events: pa.Table) -> None:
    """The stage-400 hook (writer thread): hand the batch to the segments thread."""
    runtime = _runtimes.get(id(store))
    if runtime is not None and events.num_rows and runtime.segset.compiled:
        runtime.worker.submit(events)


def runtime_for(store: Store) -> Runtime | None:
    return _runtimes.get(id(store))


def start(state) -> Runtime:
    """Called by the server at start-up (`panorama.server.app`)."""
    return Runtime(state.store, state.project.config).start()
