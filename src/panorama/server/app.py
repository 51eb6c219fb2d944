"""The server: one FastAPI app per project, owning the project's store while it runs.

`create_app(project)` opens the store at startup (the only process that may write it),
starts the group-commit writer and loads the write keys; at shutdown it commits what is
queued and closes the store. Ingestion (POST /v1/...) is served by a thin ASGI layer in
front of FastAPI (`IngestionFastPath`) so the hot path skips routing and dependency
injection; the same endpoints are declared as FastAPI routes too, which documents them at
/docs and serves them if the fast path is turned off. Other modules add their routers to
the app returned here.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from panorama.auth.limits import HEADERS_SET
from panorama.config import Project, load_project
from panorama.ingest import hooks
from panorama.ingest.keys import KeyRing
from panorama.ingest.writer import GroupCommitWriter
from panorama.server import malloc
from panorama.server.ingestion import (
    ANSWER_HEADERS,
    BATCH,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    ROUTES,
    ApiError,
    Ingestor,
    too_large,
)
from panorama.server.validation import ValidationPool
from panorama.store import Store, one, open_store

log = logging.getLogger("panorama.server")


@dataclass
class Tuning:
    """Knobs of the serving process, measured on 2 cores with bench/ingest_http.py."""

    # Most rows one group commit takes (the writer takes everything queued up to this).
    max_rows: int = 10_000
    # Seconds the writer waits for more submissions before committing (0: commit at once;
    # concurrent requests still share a commit, as they queue up during the previous one).
    linger: float = 0.0
    # DuckDB checkpoints the WAL into the database file when it passes this size, inside a
    # commit, blocking commits for ~8 µs per row folded (~0.5 s at 64 MB). The total cost is
    # the same at any size; this bounds the pause. None keeps DuckDB's default (16 MiB).
    checkpoint_threshold: str | None = "64MB"
    # Row-group merges (DuckDB's `max_vacuum_tasks`) in the checkpoints under load: none.
    # After a checkpoint DuckDB appends to a new row group, and its merges of those small
    # groups rewrote each event two to three times: checkpoints cost 10 µs of CPU per event
    # loaded instead of 3.5 (bench, 1.2M events of ~1 KB). The writer's idle checkpoints merge
    # a few at a time instead (`GroupCommitWriter.idle_vacuum_tasks`). None: DuckDB's default.
    vacuum_tasks: int | None = 0
    # DuckDB worker threads. One: a group's INSERT costs a third of the CPU it costs with two
    # (no task hand-offs between threads), and the other core stays free for the event loop.
    duckdb_threads: int | None = 1
    # Arrow compute threads. One: the kernels run on a request's few hundred rows, where
    # handing work to a thread pool costs more than it saves (~5 vs ~9 µs per call).
    # Process-wide, like the settings below.
    arrow_threads: int | None = 1
    # Seconds between loads of the journal into DuckDB (at most; an idle loader loads at
    # once). A load costs ~10 ms of CPU whatever its size plus ~9 µs per row: under a
    # steady load, larger loads are cheaper per event. Also the bound on how long an
    # acknowledged event waits before it is queryable.
    load_interval: float = 0.3
    # Processes validating large batch requests (`panorama.server.validation`):
    # the event loop's process then only reads and answers requests. 0: in the event loop.
    # Two on two cores: with one, a batch request waited in its queue while a quarter of the
    # CPU stood idle (batches of 100, 8 connections, runs interleaved: 43.6-45.6k events/s
    # with one, 46.5-54.0k with two; three: no better). One where there is one core.
    validation_workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    # Python's GIL switch interval. The writer thread needs the GIL briefly several times per
    # commit; with the default 5 ms each hand-over can wait a full interval behind the loop.
    switch_interval: float | None = 0.0005
    # Generation-0 GC threshold (default 700). JSON decoding allocates thousands of short-lived
    # acyclic objects per request; with the default, collections cost ~30% of parse+validate.
    # Objects alive after startup are frozen out of collections (`gc.freeze`). The last two
    # settings are process-wide: tests that serve in-process turn them off (None).
    gc_threshold: int | None = 50_000
    # glibc malloc arenas (MALLOC_ARENA_MAX) and how often free memory is handed back to the
    # system (`panorama.server.malloc`): without them RSS kept rising under a steady load
    # while the heap did not (docs/operations.md, soak). Process-wide, like the two above.
    malloc_arenas: int | None = 2
    malloc_trim_seconds: float | None = 60.0


@dataclass
class ServerState:
    project: Project
    store: Store
    keys: KeyRing
    writer: GroupCommitWriter
    ingestor: Ingestor


def create_app(project: Project | Path | str, *, tuning: Tuning | None = None,
               fast_path: bool = True) -> FastAPI:  # fmt: skip
    proj = project if isinstance(project, Project) else load_project(project)
    settings = tuning or Tuning()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.switch_interval:
            sys.setswitchinterval(settings.switch_interval)
        if settings.malloc_arenas:
            malloc.limit_arenas(settings.malloc_arenas)  # before DuckDB and our threads start
        trimmer = (
            malloc.Trimmer(settings.malloc_trim_seconds).start()
            if settings.malloc_trim_seconds
            else None
        )
        store = open_store(proj.store_path, replay_journal=False)  # the writer replays, with hooks
        if settings.duckdb_threads:
            store.execute(f"SET threads = {int(settings.duckdb_threads)}")
        if settings.checkpoint_threshold:
            store.execute(f"SET checkpoint_threshold = '{settings.checkpoint_threshold}'")
        if settings.vacuum_tasks is not None:
            store.execute(f"SET GLOBAL max_vacuum_tasks = {int(settings.vacuum_tasks)}")
        if proj.config.server.memory_limit:  # the pattern in config.py admits only a size
            store.execute(f"SET memory_limit = '{proj.config.server.memory_limit.strip()}'")
        keys = KeyRing(store)
        if settings.arrow_threads:
            pa.set_cpu_count(settings.arrow_threads)
        group_writer = GroupCommitWriter(store, max_rows=settings.max_rows, linger=settings.linger,
                                         load_interval=settings.load_interval)  # fmt: skip
        # derived state (identity, traits, segments, triggers) is updated off the writer
        # thread, so an acknowledgement never waits for it (panorama.ingest.hooks)
        hooks.start_background(store)
        pool = ValidationPool(settings.validation_workers) if settings.validation_workers else None
        if pool is not None:
            try:
                await pool.start()
            except Exception:  # the server still works, validating in the event loop
                log.exception("the validation processes did not start; validating in the server")
                await pool.close()
                pool = None
        state = ServerState(proj, store, keys, group_writer, Ingestor(keys, group_writer, pool))
        app.state.panorama = state
        if not len(keys):
            log.warning("no write keys yet: create one with `panorama keys create SOURCE`")
        realtime = _start_realtime(state)
        app.tracking = (app.protect, state.ingestor) if fast_path else None
        # after the real-time stages: what the journal holds from before a crash is loaded
        # now and goes through them like any new event
        group_writer.start()
        if settings.gc_threshold:
            gc.freeze()
            gc.set_threshold(settings.gc_threshold, 20, 20)
        try:
            yield
        finally:
            app.tracking = None
            if pool is not None:
                await pool.close()
            group_writer.stop()  # commits what is queued and hands it to the hooks
            hooks.stop_background(store)  # runs the hooks over what is queued
            for handle in reversed(realtime):
                handle.stop()
            if trimmer is not None:
                trimmer.stop()
            store.close()

    app = PanoramaApp(
        title="Panorama",
        summary="Segment-compatible Tracking API and the customer data platform's REST API.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served offline by panorama.server.api_docs (no CDN)
        redoc_url=None,
    )
    _add_ingestion_routes(app)
    _add_status_routes(app)
    # the REST API and the web UI (panorama.server.api, panorama.server.ui)
    from panorama.server import api, api_docs, ui

    api.install(app)
    api_docs.install(app)
    ui.install(app)
    _install_module_routes(app)
    from panorama.auth.limits import Protect  # outermost: limits and headers for every path

    app.protect = Protect(None, max_failures=proj.config.server.auth_failure_limit,
                          ingest_rate=proj.config.server.ingest_rate_limit)  # fmt: skip

    def front(inner):
        app.protect.app = IngestionFastPath(inner, app) if fast_path else inner
        return app.protect

    app.front = front
    return app


class PanoramaApp(FastAPI):
    """FastAPI with ASGI layers in FRONT of its own middleware stack: `Protect` (limits,
    headers), then `IngestionFastPath`. Added with `add_middleware` they ran inside FastAPI's
    stack (error, telemetry and body-limit middlewares, ~15% of a single-event request's
    CPU in py-spy), which the Tracking API does not need: its fast path answers every error
    itself."""

    front = None  # inner ASGI app -> the outer chain; set by create_app
    _chain = None
    protect = None  # the `Protect` layer (create_app)
    # While serving: (Protect, Ingestor) for `panorama.server.protocol`, which answers the
    # Tracking API's requests before ASGI.
    tracking = None

    async def __call__(self, scope, receive, send) -> None:
        chain = self._chain
        if chain is None:
            inner = super().__call__
            chain = self._chain = self.front(inner) if self.front else inner
        await chain(scope, receive, send)


# Real-time stages started with the server, in stage order (`panorama.ingest.hooks`): each
# module's `start(state)` registers its hooks, starts its threads and returns a handle with
# `stop()`, called at shutdown after the writer has drained. Modules not built yet are skipped.
REALTIME_MODULES = ("panorama.scale.realtime", "panorama.segments.realtime", "panorama.privacy.consent",
                    "panorama.activate.worker")  # fmt: skip


# Modules that add REST routes of their own (`install(app)`); absent ones are skipped.
ROUTE_MODULES = ("panorama.activate.api", "panorama.privacy.api")


def _install_module_routes(app: FastAPI) -> None:
    from panorama.modules import optional_import

    for name in ROUTE_MODULES:
        if (module := optional_import(name)) is not None:
            module.install(app)


def _start_realtime(server_state: ServerState) -> list:
    from panorama.modules import optional_import

    modules = (optional_import(name) for name in REALTIME_MODULES)
    return [module.start(server_state) for module in modules if module is not None]


def state(app_or_request) -> ServerState:
    app = getattr(app_or_request, "app", app_or_request)
    return app.state.panorama


# -- the ASGI fast path ----------------------------------------------------------------------

_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, content-encoding"),
    (b"access-control-max-age", b"86400"),
]


class IngestionFastPath:
    """ASGI middleware answering POST/OPTIONS on the ingestion paths; the rest goes to FastAPI."""

    def __init__(self, app, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        kind = ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
        method = scope["method"]
        if kind is None or method not in ("POST", "OPTIONS"):
            return await self.app(scope, receive, send)
        if method == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": _CORS})
            await send({"type": "http.response.body", "body": b""})
            return
        authorization = encoding = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        limit = MAX_BATCH_BYTES if kind == BATCH else MAX_MESSAGE_BYTES
        try:
            body = await _read_body(
                receive, limit, int(length) if length and length.isdigit() else None, kind
            )
        except ApiError as exc:
            return await _respond(send, exc.status, exc.body())
        ingestor: Ingestor = self.fastapi_app.state.panorama.ingestor
        status, payload = await ingestor.handle(kind, path, authorization, encoding, body)
        await _respond(send, status, payload)


async def _read_body(receive, limit: int, declared: int | None, kind: str) -> bytes:
    if declared is not None and declared > limit:
        raise too_large(kind, declared)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(
                400, "disconnected", "the client disconnected before the body was complete"
            )
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(kind, declared or size)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send, status: int, body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*ANSWER_HEADERS, (b"content-length", str(len(body)).encode())],
        HEADERS_SET: True,  # `Protect` need not add them
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# -- the same endpoints as FastAPI routes (OpenAPI docs; used when the fast path is off) ------

_MESSAGE_SCHEMA = {
    "type": "object",
    "description": "A Segment-spec message. `userId` or `anonymousId` is required; "
    "`event` for track, `groupId` for group, `previousId` for alias.",
    "properties": {
        "type": {
            "type": "string",
            "enum": ["identify", "track", "page", "screen", "group", "alias"],
        },
        "messageId": {
            "type": "string",
            "description": "Deduplication key (SDK retries are stored once).",
        },
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "groupId": {"type": "string"},
        "previousId": {"type": "string"},
        "traits": {"type": "object"},
        "properties": {"type": "object"},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
        "originalTimestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {
            "type": "string",
            "description": "The write key, if not sent as HTTP Basic username.",
        },
    },
}
_BATCH_SCHEMA = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _MESSAGE_SCHEMA},
        "sentAt": {"type": "string", "format": "date-time"},
        "context": {"type": "object", "description": "Merged under each message's context."},
        "writeKey": {"type": "string"},
    },
}
_ERROR = {
    "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {"success": {"const": False}, "code": {"type": "string"},
                       "message": {"type": "string"}, "field": {"type": "string"},
                       "reason": {"type": "string"}},
    }}},
}  # fmt: skip
_RESPONSES = {
    200: {
        "description": "Committed to the store (durable).",
        "content": {"application/json": {"example": {"success": True}}},
    },
    400: {"description": "Malformed JSON or an invalid message (`field`, `reason`).", **_ERROR},
    401: {"description": "Missing, unknown or revoked write key.", **_ERROR},
    413: {"description": "Over 32 KB per message or 500 KB per batch request.", **_ERROR},
}


def _add_ingestion_routes(app: FastAPI) -> None:
    for path, kind in ROUTES.items():
        short = len(path) <= len("/v1/b")
        schema = _BATCH_SCHEMA if kind == BATCH else _MESSAGE_SCHEMA

        async def endpoint(request: Request, kind: str = kind, path: str = path) -> Response:
            limit = MAX_BATCH_BYTES if kind == BATCH else MAX_MESSAGE_BYTES
            length = request.headers.get("content-length")
            try:
                body = await _read_body(request.receive, limit,
                                        int(length) if length and length.isdigit() else None, kind)  # fmt: skip
            except ApiError as exc:
                return Response(exc.body(), exc.status, media_type="application/json")
            status, payload = await state(request).ingestor.handle(
                kind,
                path,
                request.headers.get("authorization"),
                request.headers.get("content-encoding"),
                body,
            )
            return Response(payload, status, media_type="application/json")

        app.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            tags=["tracking API"],
            summary=f"{kind} ({'short form' if short else 'Segment spec'})",
            include_in_schema=not short,
            responses=_RESPONSES,
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": schema}, "text/plain": {"schema": schema}}}},
        )  # fmt: skip


def _add_status_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["server"], summary="Liveness: the store is open and the writer runs.")
    async def health(request: Request) -> JSONResponse:
        s = state(request)
        ok = s.writer.alive
        return JSONResponse({"status": "ok" if ok else "unavailable", "writer": ok,
                             "write_keys": len(s.keys)}, 200 if ok else 503)  # fmt: skip

    @app.get("/v1/status", tags=["tracking API"],
             summary="Events stored for the write key's source (HTTP Basic auth).")  # fmt: skip
    async def source_counts(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        from panorama.server.ingestion import basic_auth_key

        s = state(request)
        try:
            key = await s.ingestor.authenticate(
                basic_auth_key(request.headers.get("authorization"))
            )
        except ApiError as exc:
            return JSONResponse(
                {"success": False, "code": exc.code, "message": exc.message}, exc.status
            )

        def count() -> dict:
            # acknowledged events count: wait (briefly) for the loader to move them to the log
            s.writer.flush(5.0)
            events, last = one(s.store.execute(
                "SELECT count(*), max(received_at) FROM events WHERE source = ?", [key.source]
            ))
            dead = s.store.scalar(
                "SELECT count(*) FROM dead_letters WHERE source = ? AND replayed_at IS NULL",
                [key.source],
            )
            return {"source": key.source, "events": events, "dead_letters": dead,
                    "last_received_at": last.isoformat() + "Z" if last else None,
                    "writer": {"commits": s.writer.stats.commits, "rows": s.writer.stats.rows,
                               "new": s.writer.stats.new, "hook_errors": s.writer.stats.hook_errors
                               + (hooks.background_stats(s.store) or {}).get("errors", 0),
                               "max_commit_ms": round(s.writer.stats.max_commit_seconds * 1000, 1),
                               "max_group_rows": s.writer.stats.max_group_rows,
                               # acknowledged (journaled), not in the log yet; failed loads
                               "backlog_rows": s.writer.stats.backlog_rows,
                               "failed_loads": s.writer.stats.failed_commits,
                               "journal_writes": s.writer.stats.journal_writes,
                               "max_journal_ms": round(s.writer.stats.max_journal_seconds * 1000, 1),
                               "checkpoints": s.writer.stats.loader_checkpoints
                               + s.writer.stats.idle_checkpoints,
                               "checkpoint_retries": s.writer.stats.checkpoint_retries,
                               "wal_bytes": s.store.wal_bytes()}}  # fmt: skip

        return JSONResponse(await run_in_threadpool(count))
