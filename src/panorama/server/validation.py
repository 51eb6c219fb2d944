"""Validation processes: large batch requests validated beside the event loop, not on it.

Validating a batch (`panorama.server.ingestion.validate`: Segment's rules, timestamps, Arrow
columns) is most of the CPU a batch costs the server's process, and in that process it
shares one GIL with the event loop, the journal writer, the loader and the real-time stages.
A `ValidationPool` hands each large batch request to one of a few worker processes instead
and gets its `Outcome` back (the rows as Arrow IPC): the event loop only reads requests,
answers them and moves bytes.

The protocol is a frame per message over a Unix socket pair per worker, read and written by
the event loop itself (no helper threads to hand the GIL to): a request frame is the pickled
`(id, kind, path, source, received_at, body)`, an answer frame the pickled `(id, ok, result)`
where `result` is the `Outcome` (its rows as the journal's payload, `Outcome.encode`) or the
`ApiError`. A worker validates the requests it finds waiting together (`validate_many`: the
columns of their rows built once). A worker that dies fails the requests it held; they are
validated in the event loop instead (nothing was acknowledged, nothing is lost) and a new
worker is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import pickle
import socket
import struct
import time
from datetime import datetime

log = logging.getLogger("panorama.server")

_LENGTH = struct.Struct("<I")
_SOCKET_BUFFER = 4 * 1024 * 1024
_IOV_MAX = 512  # buffers per sendmsg (the system's limit is 1024)


class WorkerLost(RuntimeError):
    """The validation process died with this request in hand."""


def _frames(buffer: bytearray) -> tuple[list[slice], int]:
    """Where the complete frames at the start of `buffer` are, and how many bytes they take
    (the caller reads them, then removes them in one move: a frame at a time would move what
    follows once per frame)."""
    frames = []
    at, size = 0, len(buffer)
    while size - at >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(buffer, at)
        end = at + _LENGTH.size + length
        if end > size:
            break
        frames.append(slice(at + _LENGTH.size, end))
        at = end
    return frames, at


def _unpickled(buffer: bytearray) -> list:
    """The objects of the complete frames at the start of `buffer`, those frames removed:
    unpickled from a view of the buffer, not from a copy of each frame (a frame holds a
    request's body or a validated table's ~100 KB)."""
    frames, used = _frames(buffer)
    if not frames:
        return []
    with memoryview(buffer) as view:
        objects = [pickle.loads(view[frame]) for frame in frames]
    del buffer[:used]
    return objects


def _serve(sock: socket.socket) -> None:
    """A worker process: validate the request frames in hand together, answer each; until the
    socket closes."""
    import gc

    import pyarrow as pa

    from panorama.server import ingestion

    gc.set_threshold(50_000, 20, 20)  # as the server's event loop (`Tuning.gc_threshold`)
    pa.set_cpu_count(1)
    buffer = bytearray()
    # received into one buffer kept for the process's life: `recv(1 MB)` allocated (and gave
    # back) a megabyte per call, glibc's malloc then cost more than the copies
    scratch = bytearray(1 << 20)
    closed = False
    with memoryview(scratch) as received:
        while not closed:
            n = sock.recv_into(received)
            if not n:
                return
            buffer += received[:n]
            while True:  # and all that is there already (queued while the last were validated)
                try:
                    n = sock.recv_into(received, 0, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if not n:
                    closed = True
                    break
                buffer += received[:n]
            _answer(sock, _unpickled(buffer), ingestion)


def _answer(sock: socket.socket, frames: list, ingestion) -> None:
    """Validate the requests in hand together and send each its answer (`ingestion`: the
    module, imported once by the worker)."""
    ids, requests = [], []
    for request_id, kind, path, source, received_at, data in frames:
        ids.append(request_id)
        requests.append((kind, path, data, source, received_at))
    if not requests:
        return
    try:
        results = ingestion.validate_many(requests)
    except Exception:  # a bug: each request alone, to answer each with its own error
        results = []
        for request in requests:
            try:
                results.append(ingestion.validate(*request))
            except Exception as exc:
                results.append(exc)
    answers = []
    for request_id, result in zip(ids, results, strict=True):
        if not isinstance(result, Exception):
            try:
                result = result.encode()
            except Exception as exc:
                result = exc
        if isinstance(result, Exception) and not isinstance(result, ingestion.ApiError):
            result = RuntimeError(f"{type(result).__name__}: {result}")  # answered 500
        answer = pickle.dumps((request_id, not isinstance(result, Exception), result), protocol=5)
        answers += (_LENGTH.pack(len(answer)), answer)
    _send_all(sock, answers)


def _send_all(sock: socket.socket, parts: list) -> None:
    """`sendall` of the parts one after the other, without joining them first (a copy)."""
    views = [memoryview(p) for p in parts]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + _IOV_MAX])
        while first < len(views) and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if sent:
            views[first] = views[first][sent:]


def _worker_main(sock: socket.socket) -> None:
    try:
        _serve(sock)
    finally:
        sock.close()


class _Worker(asyncio.Protocol):
    def __init__(self, pool: ValidationPool, process, sock: socket.socket):
        self.pool = pool
        self.process = process
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.buffer = bytearray()
        self.alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for request_id, ok, result in _unpickled(self.buffer):
            future = self.pending.pop(request_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)

    def connection_lost(self, exc) -> None:
        self.alive = False
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WorkerLost("the validation process died"))
        self.pending.clear()
        self.pool._lost(self)

    def stuck(self) -> None:
        """A request waited `ValidationPool.timeout`: the process is killed (its requests are
        then validated in the event loop, and another process is started)."""
        if self.alive:
            log.error("a validation process did not answer within %.0f s; killing it",
                      self.pool.timeout)  # fmt: skip
            self.process.kill()

    def send(self, request_id: int, payload: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.transport.writelines((_LENGTH.pack(len(payload)), payload))
        return future


class ValidationPool:
    """`workers` validation processes, started with `start()` on the event loop."""

    def __init__(self, workers: int, timeout: float = 10.0):
        self.workers = workers
        # A batch takes milliseconds to validate: a worker that has not answered one in this
        # many seconds is stuck (or the machine is): it is killed and replaced.
        self.timeout = timeout
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._context = multiprocessing.get_context("spawn")
        self._closing = False
        self.restarts = 0

    async def start(self) -> ValidationPool:
        for _ in range(self.workers):  # (their imports, the slow part, run side by side below)
            await self._spawn()
        # imports and first-call costs paid now, not by the first requests
        from panorama.server.ingestion import warm_up_request

        await asyncio.gather(*(self._call(worker, *warm_up_request()) for worker in self._workers))
        return self

    async def _spawn(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (mine, theirs):  # room for several requests and answers in flight (the
            # system caps this at net.core.wmem_max / rmem_max)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        # multiprocessing hands the socket to the new process (a duplicate of its descriptor)
        process = self._context.Process(target=_worker_main, args=(theirs,),
                                         name="panorama-validation", daemon=True)  # fmt: skip
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, process.start)
        theirs.close()
        mine.setblocking(False)
        _, worker = await loop.create_connection(
            lambda: _Worker(self, process, mine), sock=mine
        )
        self._workers.append(worker)

    def _lost(self, worker: _Worker) -> None:
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        with contextlib.suppress(Exception):
            worker.process.join(0)  # reaps it if it has exited; never blocks the loop
        if not self._closing:
            log.error("a validation process died (exit code %s); starting another",
                      worker.process.exitcode)  # fmt: skip
            self.restarts += 1
            asyncio.get_running_loop().create_task(self._spawn())

    async def _call(self, worker: _Worker, kind: str, path: str, data: bytes, source: str,
                    received_at: datetime):  # fmt: skip
        request_id = next(self._ids)
        payload = pickle.dumps((request_id, kind, path, source, received_at, data), protocol=5)
        return await worker.send(request_id, payload)

    async def validate(self, kind: str, path: str, data: bytes, source: str,
                       received_at: datetime):  # fmt: skip
        """The request's `Outcome` (raises its `ApiError`), from the least busy worker; in
        this process when no worker is alive or the worker died meanwhile."""
        from panorama.server.ingestion import validate

        alive = [w for w in self._workers if w.alive]
        if alive:
            worker = min(alive, key=lambda w: len(w.pending))
            timer = asyncio.get_running_loop().call_later(self.timeout, worker.stuck)
            try:
                return await self._call(worker, kind, path, data, source, received_at)
            except WorkerLost:
                pass
            finally:
                timer.cancel()
        return validate(kind, path, data, source, received_at)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the sockets (a worker exits when its socket does) and wait for the processes,
        killing one that is still there after `timeout` seconds."""
        self._closing = True
        workers, self._workers = list(self._workers), []
        for worker in workers:
            if worker.transport is not None:
                worker.transport.close()
        deadline = time.monotonic() + timeout
        while any(w.process.is_alive() for w in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the event loop closes the sockets meanwhile
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(1)
