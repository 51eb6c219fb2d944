"""Authentication and authorisation for HTTP routes: the one place where the web UI and the
REST API check who is asking and what their role allows.

Every route of the UI and the API declares `Depends(require("permission"))` (or
`require(None)` for "any signed-in principal"); the test suite walks every route of the app
with every role and checks that a route without such a dependency is on the `PUBLIC` list.

- Browser sessions: cookie `panorama_session` (HttpOnly, SameSite=Lax, Secure unless served
  over plain HTTP to a non-loopback host), CSRF token required on every unsafe request
  (form field `csrf_token` or header `X-CSRF-Token`), and the Origin, when sent, must be ours.
- API tokens: `Authorization: Bearer pat_...` or HTTP Basic with the token as user name (as
  Segment's Profile API does). Tokens are read-only: unsafe methods are refused.
"""

from __future__ import annotations

import base64
import threading
from urllib.parse import quote, urlsplit

from fastapi import Request

from panorama.auth.policy import Principal
from panorama.auth.service import AuthService

SESSION_COOKIE = "panorama_session"
LOGIN_CSRF_COOKIE = "panorama_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths (prefixes) served without a principal: sign-in, static files, health, ingestion, docs.
PUBLIC = ("/login", "/static/", "/health", "/v1/", "/docs", "/openapi.json", "/redoc", "/favicon.ico")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

_service_lock = threading.Lock()


class NotSignedIn(Exception):
    def __init__(self, api: bool, reason: str = "sign in first"):
        super().__init__(reason)
        self.api = api
        self.reason = reason


class Forbidden(Exception):
    def __init__(self, api: bool, reason: str):
        super().__init__(reason)
        self.api = api
        self.reason = reason


def auth_service(request_or_app) -> AuthService:
    """The app's AuthService, created on first use over the server's store."""
    app = getattr(request_or_app, "app", request_or_app)
    service = getattr(app.state, "panorama_auth", None)
    if service is None:
        with _service_lock:
            service = getattr(app.state, "panorama_auth", None)
            if service is None:
                service = AuthService(app.state.panorama.store)
                app.state.panorama_auth = service
    return service


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def secure_cookies(request: Request) -> bool:
    """Secure cookies unless this is plain HTTP to a non-loopback host (where browsers drop them)."""
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").lower()
    return host in _LOOPBACK or host.startswith("127.")


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0]
    return None


def principal_of(request: Request, allow_tokens: bool = True) -> Principal | None:
    """Who is asking: an API token (Authorization header) or a browser session (cookie)."""
    cached = request.scope.get("panorama.principal", False)
    if cached is not False:
        principal = cached
    else:
        service = auth_service(request)
        token = _token_from(request)
        principal = service.token(token) if token else service.session(request.cookies.get(SESSION_COOKIE))
        request.scope["panorama.principal"] = principal
    if principal is not None and principal.kind == "token" and not allow_tokens:
        return None
    return principal


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc.lower() == (request.headers.get("host") or "").lower()


def require(permission: str | None, *, api: bool = False):
    """A FastAPI dependency: the principal, if signed in and allowed `permission`.

    `api=True`: API tokens are accepted (read-only) and failures answer JSON (401/403);
    otherwise only browser sessions, and failures redirect to sign-in or show a 403 page.
    Unsafe methods need a valid CSRF token and a same-origin request."""

    async def dependency(request: Request) -> Principal:
        principal = principal_of(request, allow_tokens=api)
        if principal is None:
            raise NotSignedIn(api)
        if permission is not None and not principal.can(permission):
            raise Forbidden(api, f"your role ({principal.role.name}) may not {_describe(permission)}")
        if request.method not in SAFE_METHODS:
            if principal.kind != "user":
                raise Forbidden(api, "API tokens are read-only")
            submitted = request.headers.get("x-csrf-token")
            if submitted is None and "form" in (request.headers.get("content-type") or ""):
                submitted = (await request.form()).get("csrf_token")
            if not AuthService.csrf_ok(principal, submitted):
                raise Forbidden(api, "the form's security token is missing or wrong; reload the page and try again")
            if not _same_origin(request):
                raise Forbidden(api, "cross-site request refused")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the route walk test
    dependency.api = api  # type: ignore[attr-defined]
    return dependency


def _describe(permission: str) -> str:
    from panorama.auth.policy import PERMISSIONS

    return PERMISSIONS.get(permission, permission)


def login_redirect(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: never redirect off-site after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def route_permission(route) -> tuple[bool, str | None] | None:
    """(found, permission) of a route's `require` dependency, or None if it has none."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = getattr(dep, "call", None)
        if call is not None and hasattr(call, "permission"):
            return True, call.permission
        stack.extend(dep.dependencies)
    return None
