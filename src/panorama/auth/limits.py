"""Rate limits and headers for every HTTP response, ingestion's fast path included.

`Protect` is the outermost ASGI middleware of the server:

- **Failed authentication** (a 401 to a request that presented credentials: a wrong write
  key, a forged API token, a bad sign-in, which the sign-in form also limits per user name;
  config `server.auth_failure_limit`): more than `max_failures` from one client
  address within `window` seconds lock that address out of the authenticated paths
  (`/v1/...`, `/api/...`, `/login`) for the rest of the window — 429 with `Retry-After`,
  so keys and tokens cannot be guessed at speed.
- **Ingestion**: a token bucket per client address over the Tracking API (`/v1/...`):
  `ingest_rate` requests per second with bursts of `ingest_burst` (config
  `server.ingest_rate_limit`; off by default, as behind a proxy without forwarded addresses
  every client shares one address); over it, 429 with `Retry-After` and a Segment-style
  error body — SDKs retry 429s, so nothing is lost.
- **Headers**: `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and
  `Referrer-Policy` on the Tracking API's answers too (the UI's middleware covers the rest).

Counting costs a dict lookup per request; nothing here logs keys, tokens or passwords.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import orjson

AUTH_PATHS = ("/v1/", "/api/", "/login")
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer")]  # fmt: skip
_EXTRA = SECURITY_HEADERS
# A response-start message's key saying its headers include SECURITY_HEADERS already.
HEADERS_SET = "panorama.headers_set"


class Protect:
    def __init__(self, app, *, max_failures: int = 30, window: float = 60.0, ingest_rate: float | None = None,
                 ingest_burst: float | None = None, max_clients: int = 100_000):  # fmt: skip
        self.app = app
        self.max_failures = max_failures
        self.window = window
        self.ingest_rate = ingest_rate
        self.ingest_burst = ingest_burst or (2 * ingest_rate if ingest_rate else 0.0)
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self.stats = {"locked_out": 0, "throttled": 0}

    # -- bookkeeping ----------------------------------------------------------------------

    def _locked(self, client: str, now: float) -> float:
        """Seconds until `client` may authenticate again (0: not locked out)."""
        window = self._failures.get(client)
        if not window:
            return 0.0
        while window and now - window[0] > self.window:
            window.popleft()
        if len(window) < self.max_failures:
            if not window:
                self._failures.pop(client, None)
            return 0.0
        return self.window - (now - window[0])

    def _failed(self, client: str, now: float) -> None:
        with self._lock:
            if len(self._failures) > self.max_clients:
                self._failures.clear()
            self._failures.setdefault(client, deque()).append(now)

    def _take(self, client: str, now: float) -> float:
        """Take one ingestion token; returns 0 or the seconds until one is available."""
        with self._lock:
            tokens, at = self._buckets.get(client, (self.ingest_burst, now))
            tokens = min(self.ingest_burst, tokens + (now - at) * self.ingest_rate)
            if tokens >= 1:
                if len(self._buckets) > self.max_clients:
                    self._buckets.clear()
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.ingest_rate

    def _refuse(self, address: str, ingestion: bool) -> tuple[float, str, str] | None:
        """(seconds to wait, code, message) when this request is refused, else None."""
        now = time.monotonic()
        wait = self._locked(address, now)
        if wait > 0:
            self.stats["locked_out"] += 1
            return wait, "too_many_failures", "too many failed authentications from this address; retry later"
        if ingestion and self.ingest_rate:
            wait = self._take(address, now)
            if wait > 0:
                self.stats["throttled"] += 1
                return wait, "rate_limited", "too many requests from this address; retry after the given seconds"
        return None

    def refuse_ingestion(self, address: str) -> tuple[bytes, bytes] | None:
        """For a Tracking API POST answered outside ASGI (`panorama.server.protocol`): None, or
        the 429's (Retry-After seconds, JSON body)."""
        refused = self._refuse(address, True)
        if refused is None:
            return None
        wait, code, message = refused
        return _retry_after(wait), _too_many_body(code, message)

    def failed(self, address: str) -> None:
        """A failed authentication outside ASGI (counts toward the lockout)."""
        self._failed(address, time.monotonic())

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if not path.startswith(AUTH_PATHS):
            return await self.app(scope, receive, send)
        client = scope.get("client")
        address = client[0] if client else "-"
        ingestion = path.startswith("/v1/")
        refused = self._refuse(address, ingestion and scope["method"] == "POST")
        if refused is not None:
            return await _too_many(send, *refused)

        # a guess presents credentials: a header, a sign-in form, or a write key (ingestion)
        presented = (
            ingestion
            or (path == "/login" and scope["method"] == "POST")
            or any(k == b"authorization" for k, _ in scope["headers"])
        )

        async def watch(message):
            if message["type"] == "http.response.start":
                if message["status"] == 401 and presented:
                    self._failed(address, time.monotonic())
                if ingestion and not message.get(HEADERS_SET):
                    headers = list(message.get("headers", []))
                    present = {k.lower() for k, _ in headers}
                    headers += [(k, v) for k, v in _EXTRA if k not in present]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, watch)


def _too_many_body(code: str, message: str) -> bytes:
    return orjson.dumps({"success": False, "code": code, "message": message, "error": code})


def _retry_after(wait: float) -> bytes:
    return str(max(1, int(wait + 0.999))).encode()


async def _too_many(send, wait: float, code: str, message: str) -> None:
    body = _too_many_body(code, message)
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", _retry_after(wait)), *_EXTRA]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
