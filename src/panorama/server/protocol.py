"""The Tracking API answered at the HTTP protocol, before ASGI.

A single-event request (`POST /v1/track` of ~1 KB) cost the server ~200 µs on its event loop,
less than a fifth of it Panorama's own work: the rest was uvicorn's ASGI machinery around it
(a scope dict, a request cycle with its event, the receive and send messages, four middleware
layers, the response headers assembled in Python). `TrackingProtocol` is uvicorn's httptools
protocol that takes `POST` requests to the Tracking API's paths itself: it gathers the body as
the parser delivers it, has `Ingestor.handle` answer, and writes the response in one piece.
Everything else - other paths and methods, pipelined requests behind one in progress,
`Expect: 100-continue`, HTTP/1.0, requests through a proxy (`X-Forwarded-For`) - goes the
ASGI way as before, where `IngestionFastPath` answers the same requests the same way.

The protections of `panorama.auth.limits.Protect` apply here too, on the same state: the
lockout after failed authentications, the per-address ingestion rate and its security
headers. The app's lifespan sets `PanoramaApp.tracking` to its (Protect, Ingestor) while it
serves; until then (and after) every request goes the ASGI way.
"""

from __future__ import annotations

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from panorama.server.ingestion import (
    ANSWER_HEADERS,
    BATCH,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    ROUTES,
    too_large,
)

_HEADERS = b"".join(name + b": " + value + b"\r\n" for name, value in ANSWER_HEADERS)



def _panorama_app(app):
    """The PanoramaApp (it has `tracking`) inside uvicorn's own wrappers, or None: an app
    wrapped otherwise (a test's fault injector) is served the ASGI way, through its wrapper."""
    while not hasattr(app, "tracking"):
        if not type(app).__module__.startswith("uvicorn."):
            return None
        app = getattr(app, "app", None)
    return app


class _NoEvent:
    @staticmethod
    def set() -> None:
        pass


class _Request:
    """Stands in for uvicorn's request cycle while a Tracking API request is answered here
    (uvicorn reads `response_complete` and `keep_alive` of it, and on a lost connection sets
    `disconnected` and `message_event`)."""

    __slots__ = ("path", "kind", "keep_alive", "authorization", "encoding", "chunks", "size",
                 "limit", "over", "retry_after", "response_complete", "disconnected")  # fmt: skip
    message_event = _NoEvent

    def __init__(self, path: str, kind: str, keep_alive: bool):
        self.path = path
        self.kind = kind
        self.keep_alive = keep_alive
        self.authorization = None
        self.encoding = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = MAX_BATCH_BYTES if kind == BATCH else MAX_MESSAGE_BYTES
        self.over: int | None = None  # the size that broke the limit (the body is dropped)
        self.retry_after: bytes | None = None
        self.response_complete = False
        self.disconnected = False


class TrackingProtocol(HttpToolsProtocol):
    _panorama = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._panorama = _panorama_app(self.app)

    def on_headers_complete(self) -> None:
        if (self._panorama is not None and self._panorama.tracking is not None
                and (self.cycle is None or self.cycle.response_complete)):  # fmt: skip
            request = self._tracking_request()
            if request is not None:
                self.cycle = request
                return
        super().on_headers_complete()

    def _tracking_request(self) -> _Request | None:
        parser = self.parser
        if (parser.get_method() != b"POST" or self.expect_100_continue
                or parser.get_http_version() != "1.1" or parser.should_upgrade()):  # fmt: skip
            return None
        path = httptools.parse_url(self.url).path.decode("ascii", "replace")
        kind = ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
        if kind is None:
            return None
        request = _Request(path, kind, parser.should_keep_alive())
        for name, value in self.headers:
            if name == b"authorization":
                request.authorization = value.decode("latin-1")
            elif name == b"content-encoding":
                request.encoding = value.decode("latin-1")
            elif name == b"content-length":
                if value.isdigit() and int(value) > request.limit:
                    request.over = int(value)
            elif name == b"x-forwarded-for":
                return None  # the client's address is the proxy's to tell: the ASGI way
        return request

    def on_body(self, body: bytes) -> None:
        request = self.cycle
        if not isinstance(request, _Request):
            return super().on_body(body)
        if request.over is None:
            request.size += len(body)
            if request.size > request.limit:
                request.over = request.size
                request.chunks = []
            else:
                request.chunks.append(body)

    def on_message_complete(self) -> None:
        request = self.cycle
        if not isinstance(request, _Request):
            return super().on_message_complete()
        task = self.loop.create_task(self._answer(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, request: _Request) -> None:
        try:
            status, body = await self._handle(request)
        except Exception:  # never leave the connection hanging
            self.logger.exception("the tracking API failed on a request")
            status, body = 500, b'{"success":false,"code":"internal_error","message":"internal error"}'
        if self.transport.is_closing():
            return
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [_HEADERS, b"content-length: ", str(len(body)).encode(), b"\r\n"]
        if request.retry_after:
            head += [b"retry-after: ", request.retry_after, b"\r\n"]
        if not request.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        self.transport.write(b"".join(head))
        request.response_complete = True
        if not request.keep_alive:
            self.transport.close()
        self.on_response_complete()

    async def _handle(self, request: _Request) -> tuple[int, bytes]:
        protect, ingestor = self._panorama.tracking or (None, None)
        if ingestor is None:
            return 503, b'{"success":false,"code":"unavailable","message":"the server is stopping"}'
        address = self.client[0] if self.client else "-"
        refused = protect.refuse_ingestion(address)
        if refused is not None:
            request.retry_after, body = refused
            return 429, body
        if request.over is not None:
            return 413, too_large(request.kind, request.over).body()
        chunks = request.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status, payload = await ingestor.handle(
            request.kind, request.path, request.authorization, request.encoding, body
        )
        if status == 401:
            protect.failed(address)
        return status, payload
