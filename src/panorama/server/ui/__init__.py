"""The web UI: server-rendered Jinja2 pages with HTMX, Plotly charts, static files served from
this package (no CDN: htmx and plotly.js are vendored under `static/vendor`).

`install(app)` adds the pages, the static files, the error pages, security headers and the
read-index keeper (a background thread that keeps `index.py`'s tables fresh) to the server's
FastAPI app. Pages call `views`, `search` and the auth service; no logic lives in routes.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import mimetypes
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from panorama.auth.web import Forbidden, NotSignedIn, login_redirect

log = logging.getLogger("panorama.ui")

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))


class StaticFiles:
    """The package's static files, read once, served with a content hash in the URL (cached for a
    year) and gzip-compressed when the browser accepts it."""

    def __init__(self, root: Path = STATIC):
        self.files: dict[str, tuple[bytes, bytes | None, str]] = {}
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                data = path.read_bytes()
                digest.update(rel.encode() + data)
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind in ("application/javascript", "text/javascript"):
                    kind += "; charset=utf-8"
                packed = gzip.compress(data, 6) if len(data) > 1024 else None
                self.files[rel] = (data, packed, kind)
        self.version = digest.hexdigest()[:12]

    def url(self, name: str) -> str:
        return f"/static/{self.version}/{name}"

    def response(self, request: Request, version: str, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        data, packed, kind = found
        headers = {"cache-control": "public, max-age=31536000, immutable" if version == self.version
                   else "no-cache", "x-content-type-options": "nosniff", "vary": "accept-encoding"}  # fmt: skip
        if packed is not None and "gzip" in request.headers.get("accept-encoding", ""):
            headers["content-encoding"] = "gzip"
            return Response(packed, 200, headers=headers, media_type=kind)
        return Response(data, 200, headers=headers, media_type=kind)


static_files = StaticFiles()
templates.env.globals["static"] = static_files.url


def _fmt(value, digits: int = 2) -> str:
    """A value for display: numbers rounded, times to the minute, lists joined, None as a dash."""
    import datetime as dt

    if value is None or value == "":
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "\u2014"
        return f"{value:,.{digits}f}" if abs(value) < 1e15 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, digits) for v in value) or "\u2014"
    if isinstance(value, dict):
        import orjson

        return orjson.dumps(value, default=str).decode()
    return str(value)


def _chartjson(fig) -> str:
    from markupsafe import Markup

    from panorama.server.ui.dashboards import to_json

    return Markup(to_json({k: v for k, v in fig.items() if k != "alt"}).replace("<", "\\u003c")
                  .replace(">", "\\u003e").replace("&", "\\u0026"))


def _pretty(value) -> str:
    import orjson

    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _pct(value) -> str:
    return "\u2014" if value is None else f"{100 * float(value):.0f}%"


templates.env.filters.update(fmt=_fmt, chartjson=_chartjson, pretty=_pretty, pct=_pct)
templates.env.globals["masked"] = lambda v: isinstance(v, str) and (v.startswith("anon:") or v == "[hidden]"
                                                                    or "\u2022" in v)

_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'")  # fmt: skip
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Security headers on every UI and API response (the ingestion fast path answers before
    this middleware); a strict Content-Security-Policy on everything but the API docs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        docs = path.startswith(("/docs", "/redoc"))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in present]
                if not docs and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", _CSP.encode()))
                if not path.startswith("/static/") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") or request.headers.get("hx-request") == "true"


def install(app: FastAPI, *, refresh_seconds: float = 30.0, keep_index: bool = True) -> None:
    """Add the web UI to the server's app (see the module doc)."""
    from panorama.server.ui import routes, segment_builder

    @app.get("/static/{version}/{name:path}", include_in_schema=False)
    async def static(request: Request, version: str, name: str) -> Response:
        return static_files.response(request, version, name)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    segment_builder.add_routes(app)  # before routes: /segments/new is not a segment's page
    routes.add_routes(app)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if exc.api:
            return JSONResponse({"error": "unauthorized", "message": "send an API token: "
                                 "Authorization: Bearer pat_... (see `panorama tokens create`)"},
                                401, headers={"www-authenticate": 'Bearer realm="panorama"'})  # fmt: skip
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"hx-redirect": login_redirect(request)})
        return RedirectResponse(login_redirect(request), 303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if exc.api and not _wants_html(request):
            return JSONResponse({"error": "forbidden", "message": exc.reason}, 403)
        from panorama.auth.web import principal_of

        return templates.TemplateResponse(
            request, "error.html",
            {"principal": principal_of(request, allow_tokens=False), "title": "Not allowed",
             "message": exc.reason, "status": 403},
            status_code=403,
        )  # fmt: skip

    app.add_middleware(SecurityHeaders)

    if keep_index:
        previous = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app_: FastAPI):
            async with previous(app_) as state:
                from panorama.server.ui.index import IndexKeeper

                served = app_.state.panorama
                keeper = IndexKeeper(served.store, refresh_seconds,
                                     ingested=lambda: served.writer.stats.rows).start()  # fmt: skip
                app_.state.panorama_index = keeper
                try:
                    yield state
                finally:
                    keeper.stop()

        app.router.lifespan_context = lifespan


def html_error(request: Request, status: int, title: str, message: str, principal=None) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"principal": principal, "title": title, "message": message, "status": status},
        status_code=status,
    )
