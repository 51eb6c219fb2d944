"""Activation in the running server: the stage-500 hook, delivery workers, timers, file exports.

- **Hook** (stage 500): hands each committed micro-batch to the activation thread, which
  runs event triggers and abandoned-cart timers over everything queued meanwhile, enqueued in
  one transaction with the batches' watermark (`activation_state.events_received_at`). At start-up, events received after the watermark
  (a crash between the events' commit and the hook's) are processed again; idempotency keys
  make that safe.
- **Delivery**: one thread per webhook/email destination, woken when its actions commit and
  polling otherwise; each delivery has its own timeout, so a slow or dead receiver holds up
  only its own destination — never the others, nor ingestion (the hook only writes rows).
- **Timers**: one thread sleeps until the next pending timer is due (or a new one is set).
- **File exports**: file destinations with `every` are written on that schedule.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa

from panorama.activate import consent, outbox
from panorama.activate.destinations import DestinationError, EmailSender, WebhookSender
from panorama.activate.triggers import compile_triggers, fire_due_timers, next_timer_due, on_events
from panorama.config import FileDestinationConfig, Project
from panorama.ingest import hooks
from panorama.ingest.hooks import CoalescingWorker
from panorama.ingest.log import utcnow
from panorama.segments.catalog import Catalog, build_catalog
from panorama.segments.engine import export, transaction
from panorama.store import Store

log = logging.getLogger("panorama.activate")

STAGE = 500
POLL_SECONDS = 1.0
CATCH_UP_MARGIN = timedelta(seconds=5)
CATCH_UP_MAX_EVENTS = 200_000
CATCH_UP_WINDOW = timedelta(hours=1)  # a longer gap means the triggers were off
WATERMARK = "events_received_at"

_runtimes: dict[int, Runtime] = {}


def state_get(store: Store, key: str) -> str | None:
    return store.scalar("SELECT value FROM activation_state WHERE key = ?", [key])


def state_set(cur, key: str, value: str) -> None:
    cur.execute("INSERT OR REPLACE INTO activation_state (key, value) VALUES (?, ?)", [key, value])


def code_secret(store: Store) -> str:
    """The project's secret for personal discount codes (created once, kept in the store)."""
    value = state_get(store, "code_secret")
    if value is None:
        value = secrets.token_hex(32)
        store.execute("INSERT OR IGNORE INTO activation_state (key, value) VALUES ('code_secret', ?)", [value])
        value = state_get(store, "code_secret")
    return value


def make_sender(store: Store, project: Project, name: str):
    dest = project.config.destinations[name]
    if dest.type in ("webhook", "email"):
        sender = WebhookSender(name, dest) if dest.type == "webhook" else \
            EmailSender(name, dest, project.root, code_secret(store))  # fmt: skip
        sender.store, sender.project = store, project  # for the consent check
        return sender
    raise DestinationError(f"destinations.{name}: {dest.type} destinations are not delivered from the outbox")


def attempt(sender, item: outbox.Pending) -> outbox.Attempt:
    """One delivery attempt (consent checked first); never raises."""
    profile = item.payload.get("profile") or {}
    refusal = consent.refusal(item.profile_id, profile, sender.name, sender.config.type,
                              getattr(sender, "store", None), getattr(sender, "project", None))  # fmt: skip
    if refusal:
        return outbox.Attempt(item, False, suppressed=True, error=f"consent: {refusal}")
    try:
        outcome = sender.send(item, profile)
    except Exception as exc:  # a bug in a sender must not kill its worker
        log.exception("destination %s: delivery %s failed unexpectedly", sender.name, item.id)
        return outbox.Attempt(item, False, error=f"{type(exc).__name__}: {exc}")
    return outbox.Attempt(item, outcome.ok, outcome.permanent, outcome.status, outcome.error)


def deliver_one(store: Store, sender, item: outbox.Pending, retry) -> str:
    """One attempt at one outbox row, recorded; returns its new status."""
    return outbox.record_many(store, [attempt(sender, item)], retry)[0]


def deliver_pending(store: Store, project: Project, names: Iterable[str] | None = None,
                    limit: int = 10_000) -> dict[str, dict[str, int]]:  # fmt: skip
    """Deliver what is due now, once, without a server (`panorama activate deliver`)."""
    results: dict[str, dict[str, int]] = {}
    for name, dest in project.config.destinations.items():
        if dest.type == "file" or (names and name not in names):
            continue
        sender = make_sender(store, project, name)
        counts: dict[str, int] = {}
        try:
            for item in outbox.due(store, name, limit):
                status = deliver_one(store, sender, item, dest.retry)
                counts[status] = counts.get(status, 0) + 1
        finally:
            sender.close()
        results[name] = counts
    return results


def run_file_export(store: Store, project: Project, name: str, catalog: Catalog | None = None,
                    now: datetime | None = None) -> tuple[Path, int]:  # fmt: skip
    """Write a file destination once (full, or the delta since its previous export)."""
    dest = project.config.destinations[name]
    assert isinstance(dest, FileDestinationConfig)
    now = now or utcnow()
    key = f"file:{name}:exported_at"
    since = None
    if dest.mode == "delta":
        previous = state_get(store, key)
        since = datetime.fromisoformat(previous) if previous else datetime(1970, 1, 1)
    path = project.root / dest.path.replace("{timestamp}", now.strftime("%Y%m%dT%H%M%S"))
    count = export(store, catalog or build_catalog(store), dest.segment, path, dest.columns, since)
    state_set(store.cursor(), key, now.isoformat())
    return path, count


class _DestinationWorker:
    """One destination's deliveries: rounds of due rows, sent `concurrency` at a time, their
    outcomes recorded in one statement per round."""

    def __init__(self, runtime: Runtime, name: str, sender):
        self.runtime = runtime
        self.name = name
        self.sender = sender
        config = runtime.project.config.destinations[name]
        self.retry = config.retry
        self.concurrency = config.concurrency
        self.round = max(4 * self.concurrency, 8)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"panorama-send-{name}") \
            if self.concurrency > 1 else None  # fmt: skip
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"panorama-deliver-{name}", daemon=True)
        self.stats = {"delivered": 0, "failed": 0, "dead": 0, "suppressed": 0}

    def _run(self) -> None:
        store = self.runtime.store
        stop = self.runtime.stopping
        while not stop.is_set():
            try:
                items = outbox.due(store, self.name, self.round)
                if items:
                    if self.pool is not None:
                        results = list(self.pool.map(lambda it: attempt(self.sender, it), items))
                    else:
                        results = [attempt(self.sender, it) for it in items]
                    for status in outbox.record_many(store, results, self.retry):
                        key = status if status in self.stats else "failed"
                        self.stats[key] += 1
                if len(items) == self.round:
                    continue
                upcoming = outbox.next_due(store, self.name)
            except Exception:
                log.exception("destination %s: the delivery worker hit an error", self.name)
                upcoming = None
            wait = POLL_SECONDS
            if upcoming is not None:
                wait = max(0.0, min(wait, (upcoming - utcnow()).total_seconds()))
            if wait > 0:
                self.wake.wait(wait)
            self.wake.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.sender.close()


class Runtime:
    def __init__(self, store: Store, project: Project):
        self.store = store
        self.project = project
        self.lock = threading.Lock()  # timers and outbox writes: hook vs timer thread
        self.stopping = threading.Event()
        self.triggers, self.errors = compile_triggers(project.config)
        for message in self.errors.values():
            log.error("%s (this trigger is off)", message)
        self.workers: dict[str, _DestinationWorker] = {}
        self._timer_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._catalog: Catalog | None = None
        self.events_worker: CoalescingWorker | None = None
        self.stats = {"batches": 0, "actions": 0, "timers": 0, "fired": 0, "last_ms": 0.0, "errors": 0}

    # -- the profile catalog: shared with the segments runtime when it runs -----------------------

    def catalog(self) -> Catalog:
        from panorama.segments.realtime import runtime_for

        segments = runtime_for(self.store)
        if segments is not None:
            return segments.segset.catalog
        if self._catalog is None:
            self._catalog = build_catalog(self.store)
        return self._catalog

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Runtime:
        for name, dest in self.project.config.destinations.items():
            if dest.type == "file":
                continue
            try:
                self.workers[name] = _DestinationWorker(self, name, make_sender(self.store, self.project, name))
            except DestinationError as exc:
                log.error("%s (nothing is delivered to it until fixed)", exc)
        _runtimes[id(self.store)] = self
        outbox.set_waker(self.store, self.wake)
        self._catch_up()
        self.events_worker = CoalescingWorker(
            "panorama-activation-rt", self.on_events, gate=self.store.gate
        ).start()
        hooks.register(STAGE, "activation", on_events_hook)
        for worker in self.workers.values():
            worker.thread.start()
        self._spawn("panorama-timers", self._timers)
        for name, dest in self.project.config.destinations.items():
            if dest.type == "file" and dest.every:
                self._spawn(f"panorama-export-{name}", self._exports, name, dest.every)
        return self

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        if self.events_worker is not None:
            self.events_worker.stop()  # what the writer handed over last is still processed
        self.stopping.set()
        self._timer_wake.set()
        for worker in self.workers.values():
            worker.wake.set()
        for worker in self.workers.values():
            if worker.thread.is_alive():
                worker.thread.join(30)
        for thread in self._threads:
            thread.join(30)
        outbox.set_waker(self.store, None)
        _runtimes.pop(id(self.store), None)

    def wake(self, destinations: Iterable[str]) -> None:
        for name in destinations:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake.set()

    # -- events --------------------------------------------------------------------------------

    def on_events(self, events: pa.Table) -> None:
        started = time.perf_counter()
        cur = self.store.cursor()
        with self.lock, transaction(cur):
            counts = on_events(cur, self.store, self.catalog(), self.triggers, events)
            last = events.column("received_at")
            import pyarrow.compute as pc

            latest = pc.max(last).as_py()
            if latest is not None:
                state_set(cur, WATERMARK, latest.isoformat())
        if counts["timers"]:
            self._timer_wake.set()
        self.stats["batches"] += 1
        self.stats["actions"] += counts["actions"]
        self.stats["timers"] += counts["timers"]
        self.stats["last_ms"] = (time.perf_counter() - started) * 1000

    def _catch_up(self) -> None:
        """Events committed after the last batch the hook processed (a crash in between)."""
        mark = state_get(self.store, WATERMARK)
        if mark is None:  # first start: nothing before now is replayed
            latest = self.store.scalar("SELECT max(received_at) FROM events")
            if latest is not None:
                state_set(self.store.cursor(), WATERMARK, latest.isoformat())
            return
        latest = self.store.scalar("SELECT max(received_at) FROM events")
        if not self.triggers or latest is None:
            return
        since = datetime.fromisoformat(mark) - CATCH_UP_MARGIN
        if latest - since > CATCH_UP_WINDOW:  # not a crash gap: triggers were off meanwhile
            log.warning("activation: events since %s were not seen by triggers; not replaying them", mark)
            state_set(self.store.cursor(), WATERMARK, latest.isoformat())
            return
        table = self.store.execute(
            "SELECT * FROM events WHERE received_at > ? AND file IS NULL ORDER BY received_at LIMIT ?",
            [since, CATCH_UP_MAX_EVENTS],
        ).to_arrow_table()  # fmt: skip
        if table.num_rows:
            log.info("activation: catching up with %d events received since %s", table.num_rows, since)
            self.on_events(table)

    # -- timers and exports ----------------------------------------------------------------------

    def _timers(self) -> None:
        if not any(t.timed for t in self.triggers.values()):
            return
        while not self.stopping.is_set():
            try:
                with self.lock:
                    counts = fire_due_timers(self.store, self.catalog(), self.triggers)
                self.stats["fired"] += counts["fired"]
                upcoming = next_timer_due(self.store)
            except Exception:
                self.stats["errors"] += 1
                log.exception("activation: firing timers failed")
                upcoming = None
            wait = POLL_SECONDS
            if upcoming is not None:
                wait = max(0.0, min(wait, (upcoming - utcnow()).total_seconds()))
            if wait > 0:
                self._timer_wake.wait(wait)
            self._timer_wake.clear()

    def _exports(self, name: str, every: float) -> None:
        while not self.stopping.wait(every):
            try:
                path, count = run_file_export(self.store, self.project, name, self.catalog())
                log.info("file destination %s: %d rows to %s", name, count, path)
            except Exception:
                self.stats["errors"] += 1
                log.exception("file destination %s: export failed", name)


def on_events_hook(store: Store, events: pa.Table) -> None:
    """The stage-500 hook (writer thread): hand the batch to the activation thread."""
    runtime = _runtimes.get(id(store))
    if runtime is not None and events.num_rows and runtime.triggers and runtime.events_worker:
        runtime.events_worker.submit(events)


def runtime_for(store: Store) -> Runtime | None:
    return _runtimes.get(id(store))


def start(state) -> Runtime:
    """Called by the server at start-up (`panorama.server.app`)."""
    return Runtime(state.store, state.project).start()
