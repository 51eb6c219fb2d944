"""Large batches validated in worker processes (`panorama.server.validation`) are answered and
stored exactly as when the event loop validates them; a worker that dies costs no request."""

from __future__ import annotations

import os
import signal
import time

import httpx

from conftest import make_project, start_server
from panorama.server.app import Tuning

POOL = Tuning(gc_threshold=None, switch_interval=None, malloc_trim_seconds=None,
              arrow_threads=None, validation_workers=1)  # fmt: skip
LOOP = Tuning(gc_threshold=None, switch_interval=None, malloc_trim_seconds=None,
              arrow_threads=None, validation_workers=0)  # fmt: skip


def _batch(tag: str) -> list[dict]:
    """~30 KB: over the size from which batches go to the pool, with a few bad messages."""
    messages = [
        {"type": "track", "userId": f"u{i % 7}", "anonymousId": f"a{i}", "event": "Viewed",
         "messageId": f"{tag}-{i}", "timestamp": "2024-05-01T10:00:00.5+02:00",
         "properties": {"price": 9.5 + i, "currency": "EUR", "note": "x" * 200},
         "context": {"ip": "203.0.113.7", "page": {"url": f"https://shop.example.com/{i}"}}}
        for i in range(100)
    ]  # fmt: skip
    messages[3] = {"type": "identify", "userId": "u3", "messageId": f"{tag}-3", "timestamp": "2024-05-01",
                   "traits": {"email": "Ann@Example.com", "phone": "+44 7700 900123"}}  # fmt: skip
    messages[10]["timestamp"] = "yesterday"
    messages[20]["properties"]["price"] = "not a number"
    messages[30].pop("messageId")
    messages[40]["type"] = "alias"  # no previousId
    return messages


def _run(project_dir, tuning: Tuning, tag: str):
    keys = make_project(project_dir, ("web",))
    server = start_server(project_dir, keys, tuning=tuning)
    try:
        pool = server.state.ingestor.pool
        assert (pool is not None) == bool(tuning.validation_workers)
        ok = httpx.post(server.url + "/v1/batch", json={"batch": _batch(tag)},
                        auth=(keys["web"], ""), timeout=30)  # fmt: skip
        envelope = httpx.post(server.url + "/v1/batch", json={"batch": {"not": "a list"},
                              "pad": "x" * 20_000}, auth=(keys["web"], ""), timeout=30)  # fmt: skip
        rows = server.query(
            "SELECT * EXCLUDE (received_at) FROM events WHERE source = 'web' ORDER BY message_id"
        )
        dead = server.query("SELECT field, reason FROM dead_letters ORDER BY field, reason")
        return ok, envelope, rows, dead
    finally:
        server.stop()


def test_the_pool_answers_and_stores_what_the_event_loop_does(tmp_path):
    from panorama.config import init_project

    results = {}
    two = Tuning(**{**POOL.__dict__, "validation_workers": 2})
    for name, tuning in (("pool", POOL), ("loop", LOOP), ("two", two)):
        directory = tmp_path / name
        init_project(directory, name=name)
        results[name] = _run(directory, tuning, "b")
    pool, loop = results["pool"], results["loop"]
    assert results["two"][0].json() == loop[0].json() and results["two"][2:] == loop[2:]
    assert pool[0].status_code == loop[0].status_code == 200
    assert pool[0].json() == loop[0].json()
    assert sorted(r["index"] for r in pool[0].json()["rejected"]) == [10, 20, 40]
    assert pool[1].status_code == loop[1].status_code == 400
    assert pool[1].json() == loop[1].json() and pool[1].json()["code"] == "invalid_batch"
    assert len(pool[2]) == 97  # the message without an id is stored under a content id
    assert pool[2] == loop[2]
    assert pool[3] == loop[3]


def test_a_worker_that_dies_loses_no_request(project_dir):
    keys = make_project(project_dir, ("web",))
    server = start_server(project_dir, keys, tuning=POOL)
    try:
        pool = server.state.ingestor.pool
        worker = pool._workers[0].process
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(5)
        answers = [httpx.post(server.url + "/v1/batch", json={"batch": _batch(f"k{n}")},
                              auth=(keys["web"], ""), timeout=30) for n in range(3)]  # fmt: skip
        assert [a.status_code for a in answers] == [200, 200, 200]
        # 96 per batch, and once the message without a messageId (the same content each time)
        assert server.query("SELECT count(*) FROM events")[0][0] == 3 * 96 + 1
        deadline = time.monotonic() + 30
        while not pool._workers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.restarts == 1 and pool._workers and pool._workers[0].process.is_alive()
        again = httpx.post(server.url + "/v1/batch", json={"batch": _batch("after")},
                           auth=(keys["web"], ""), timeout=30)  # fmt: skip
        assert again.status_code == 200
        assert server.query("SELECT count(*) FROM events")[0][0] == 4 * 96 + 1
        processes = [w.process for w in pool._workers]
    finally:
        stopping = time.monotonic()
        server.stop()
    assert time.monotonic() - stopping < 5 and processes
    assert not any(p.is_alive() for p in processes)  # stopped with the server


def test_small_batches_stay_in_the_event_loop(project_dir):
    keys = make_project(project_dir, ("web",))
    server = start_server(project_dir, keys, tuning=POOL)
    try:
        pool = server.state.ingestor.pool
        before = next(pool._ids)
        r = httpx.post(server.url + "/v1/batch", auth=(keys["web"], ""),
                       json={"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "s1"}]})  # fmt: skip
        assert r.status_code == 200 and next(pool._ids) == before + 1  # no request went to the pool
        assert server.query("SELECT count(*) FROM events")[0][0] == 1
    finally:
        server.stop()


def test_a_stuck_worker_is_replaced(project_dir):
    keys = make_project(project_dir, ("web",))
    server = start_server(project_dir, keys, tuning=POOL)
    try:
        pool = server.state.ingestor.pool
        pool.timeout = 1.0
        worker = pool._workers[0].process
        os.kill(worker.pid, signal.SIGSTOP)  # alive, answering nothing
        started = time.monotonic()
        r = httpx.post(server.url + "/v1/batch", json={"batch": _batch("stuck")},
                       auth=(keys["web"], ""), timeout=30)  # fmt: skip
        assert r.status_code == 200 and 1.0 <= time.monotonic() - started < 10
        assert server.query("SELECT count(*) FROM events")[0][0] == 97
        worker.join(5)
        assert not worker.is_alive()
        deadline = time.monotonic() + 30
        while not (pool._workers and pool._workers[0].process.is_alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.restarts == 1 and pool._workers[0].process.pid != worker.pid
    finally:
        server.stop()


def test_requests_in_hand_together_are_answered_each_as_alone():
    # A worker validates the requests waiting for it together: a bad body, a bad sentAt or
    # bad messages in one request change nothing for the others.
    import asyncio

    import orjson

    from panorama.ingest.log import utcnow
    from panorama.server.ingestion import ApiError, validate
    from panorama.server.validation import ValidationPool

    received = utcnow()
    bodies = [orjson.dumps({"batch": _batch(f"t{n}"), "sentAt": "2024-05-01T10:00:01Z"}) for n in range(6)]
    bodies[1] = b'{"batch": [' + b"x" * 20_000
    bodies[2] = orjson.dumps({"batch": _batch("t2"), "sentAt": "not a time"})
    bodies[4] = orjson.dumps({"batch": _batch("t4")})  # no sentAt: no skew correction
    sources = ["web", "web", "app", "web", "app", "web"]

    def outcome(result):
        if isinstance(result, ApiError):
            return ("error", result.status, result.code, result.message)
        result.decode()  # from the pool: the rows as the journal's payload
        table = None if result.table is None else result.table.to_pylist()
        return (table, result.rows, [d.__dict__ for d in result.dead], result.rejected)

    async def through_pool():
        pool = await ValidationPool(1).start()
        worker = pool._workers[0].process
        try:
            os.kill(worker.pid, signal.SIGSTOP)  # the requests queue up: validated together
            calls = [asyncio.ensure_future(pool.validate("batch", "/v1/batch", b, s, received))
                     for b, s in zip(bodies, sources, strict=True)]  # fmt: skip
            await asyncio.sleep(0.2)
            os.kill(worker.pid, signal.SIGCONT)
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await pool.close()

    pooled = asyncio.run(through_pool())
    alone = []
    for body, source in zip(bodies, sources, strict=True):
        try:
            alone.append(validate("batch", "/v1/batch", body, source, received))
        except ApiError as exc:
            alone.append(exc)
    assert [outcome(p) for p in pooled] == [outcome(a) for a in alone]
    assert isinstance(pooled[1], ApiError) and pooled[1].code == "invalid_json"
    assert isinstance(pooled[2], ApiError) and "sentAt" in pooled[2].message
    assert [len(p.rejected) for p in pooled if not isinstance(p, ApiError)] == [3, 3, 3, 3]


def test_frames_are_read_whole_and_a_partial_one_waits_for_its_rest():
    import pickle

    from panorama.server.validation import _LENGTH, _unpickled

    def framed(obj) -> bytes:
        payload = pickle.dumps(obj, protocol=5)
        return _LENGTH.pack(len(payload)) + payload

    third = framed(("c", b"z" * 100_000))
    buffer = bytearray(framed(("a", b"x" * 10)) + framed(("b", b"")) + third[:5000])
    assert _unpickled(buffer) == [("a", b"x" * 10), ("b", b"")]
    assert bytes(buffer) == third[:5000]  # kept, and the buffer can still grow
    buffer += third[5000:]
    assert _unpickled(buffer) == [("c", b"z" * 100_000)]
    assert buffer == bytearray() and _unpickled(buffer) == []


def test_answers_are_sent_whole_in_order_past_the_socket_buffer_and_iov_limit():
    import socket
    import threading

    from panorama.server.validation import _IOV_MAX, _send_all

    parts = [bytes([i % 251]) * (i % 7) for i in range(_IOV_MAX * 3)] + [b"\x01" * 5_000_000, b"end"]
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    received = bytearray()

    def read() -> None:
        while chunk := theirs.recv(1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    _send_all(mine, parts)
    mine.close()
    reader.join(10)
    theirs.close()
    assert bytes(received) == b"".join(parts)
