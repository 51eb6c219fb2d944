"""Checkpoints under a steady load: the real-time passes write right after every load, so a
CHECKPOINT tried then needs the store's write gate to find a moment without them."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from panorama.ingest.hooks import CoalescingWorker
from panorama.store import WriteGate, open_store


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.duckdb") as s:
        s.execute("SET checkpoint_threshold = '1GB'")  # only explicit checkpoints here
        s.execute("CREATE TABLE state (k INTEGER PRIMARY KEY, v INTEGER)")
        s.execute("INSERT INTO state SELECT range, 0 FROM range(100)")
        s.execute("CREATE TABLE log (i INTEGER, pad VARCHAR)")
        s.execute("CHECKPOINT")
        yield s


def _busy_pass(store, seconds: float, inside: threading.Event):
    """A real-time pass: one transaction with updates, open for `seconds`."""

    def run(_table: pa.Table) -> None:
        cur = store.cursor()
        cur.execute("BEGIN TRANSACTION")
        cur.execute("UPDATE state SET v = v + 1 WHERE k % 7 = 0")
        inside.set()
        time.sleep(seconds)
        cur.execute("COMMIT")

    return run


def _load(store, n: int) -> None:
    store.cursor().execute(f"INSERT INTO log SELECT range, repeat('x', 200) FROM range({n})")


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "ungated"])
def test_a_checkpoint_gets_in_between_real_time_passes(store, gated):
    inside = threading.Event()
    worker = CoalescingWorker("test-rt", _busy_pass(store, 0.05, inside),
                              gate=store.gate if gated else None)  # fmt: skip
    worker.start()
    tries, done = 0, 0
    try:
        for _ in range(15):
            _load(store, 2_000)
            inside.clear()
            worker.submit(pa.table({"x": [1]}))  # the pass starts right after the load, as
            assert inside.wait(5)  # the loader hands its rows to the hooks
            before = store.wal_bytes()
            tries += 1
            if store.checkpoint(wait=2.0):
                done += 1
                assert store.wal_bytes() < before
    finally:
        worker.stop()
    assert worker.stats["errors"] == 0 and worker.stats["runs"] >= 1
    if gated:
        assert done == tries  # each waited for the pass under way, none failed
    else:
        assert done == 0  # the failure the gate is for: a pass with updates is running
    assert store.scalar("SELECT count(*) FROM log") == 15 * 2_000


def test_gate_waits_for_shared_holders_then_holds_new_ones_off():
    gate = WriteGate()
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def holder():
        with gate.shared():
            inside.set()
            release.wait(5)
            order.append("first pass ends")

    def late_pass():
        with gate.shared():
            order.append("late pass")

    t1 = threading.Thread(target=holder)
    t1.start()
    inside.wait(5)
    with gate.exclusive(0.05) as got:  # the pass is still running: not within 50 ms
        assert not got

    def checkpoint():
        with gate.exclusive(5) as got:
            assert got
            order.append("checkpoint")
            time.sleep(0.05)

    t2 = threading.Thread(target=checkpoint)
    t2.start()
    time.sleep(0.05)  # the checkpoint is waiting now: a new pass must wait behind it
    t3 = threading.Thread(target=late_pass)
    t3.start()
    time.sleep(0.05)
    assert order == []
    release.set()
    for t in (t1, t2, t3):
        t.join(5)
    assert order == ["first pass ends", "checkpoint", "late pass"]


def test_a_pass_may_nest_and_never_waits_for_itself():
    gate = WriteGate()
    # reentrant; and from inside a pass an exclusive hold is refused at once (no deadlock)
    with gate.shared(), gate.shared(), gate.exclusive(5) as got:
        assert not got
    with gate.exclusive(0.1) as got:  # all released
        assert got


def test_a_thread_that_read_one_row_and_idles_does_not_stop_checkpoints(store):
    """`one()` reads a result to its end: `fetchone()` left the event loop's cursor inside its
    transaction, and every CHECKPOINT after the next committed UPDATE failed until that
    thread's next statement (in the server: never, under load - the WAL grew 2 GB a minute)."""
    from panorama.store import one

    read = threading.Thread(target=lambda: one(store.cursor().execute("SELECT v FROM state WHERE k = ?", [3])))
    read.start()
    read.join()
    assert store.scalar("SELECT count(*) FROM state WHERE k < ?", [10]) == 10  # this thread too
    store.cursor().execute("UPDATE state SET v = v + 1 WHERE k = 1")
    _load(store, 1000)
    assert store.checkpoint(wait=1)

    # what it guards against, so the test keeps meaning it: a half-read result does stop it
    half = store.con.cursor()
    half.execute("SELECT v FROM state WHERE k < 10").fetchone()  # on purpose
    store.cursor().execute("UPDATE state SET v = v + 1 WHERE k = 2")
    assert not store.checkpoint(wait=1)
    half.close()
    assert store.checkpoint(wait=1)


def test_no_module_reads_a_result_in_part():
    """`fetchone()` is banned in the package (see `panorama.store.one`)."""
    from pathlib import Path

    import panorama

    offenders = [f"{path}:{n}" for path in Path(panorama.__file__).parent.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if ".fetchone()" in line and "fetchone() /" not in line]  # fmt: skip
    assert offenders == [], "use panorama.store.one(result) instead of .fetchone(): " + ", ".join(offenders)
