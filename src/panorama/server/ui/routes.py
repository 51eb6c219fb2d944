"""The web UI's pages. Each route checks the role (`require`), calls a read or admin function
and renders a template; no logic lives here."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from panorama.auth.policy import PERMISSIONS, PII_CLASSES, ROLES, Principal
from panorama.auth.service import RateLimited
from panorama.auth.web import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    auth_service,
    client_ip,
    require,
    safe_next,
    secure_cookies,
)
from panorama.server.ui import charts, dashboards, templates, views
from panorama.server.ui.search import search as run_search

NAV = (
    ("search", "Customers", "/search", "profiles.view"),
    ("segments", "Segments", "/segments", "segments.view"),
    ("dashboards", "Dashboards", "/dashboards", "dashboards.view"),
    ("journeys", "Journeys", "/journeys", "dashboards.view"),
    ("experiments", "Experiments", "/experiments", "dashboards.view"),
    ("sources", "Sources", "/sources", "sources.view"),
    ("users", "Users & tokens", "/admin/users", "users.manage"),
    ("audit", "Audit log", "/admin/audit", "audit.view"),
    ("privacy", "Privacy", "/admin/privacy", "profiles.delete"),
)

P = Annotated[Principal, Depends(require(None))]


def _state(request: Request):
    return request.app.state.panorama


def context(request: Request, principal: Principal) -> views.ViewContext:
    s = _state(request)
    return views.ViewContext(s.store, s.project, principal, auth_service(request).masker(principal))


def page(request: Request, name: str, principal: Principal | None, active: str = "", status: int = 200,
         **values) -> HTMLResponse:  # fmt: skip
    nav = [(key, label, href) for key, label, href, perm in NAV if principal and principal.can(perm)]
    return templates.TemplateResponse(
        request, name,
        {"principal": principal, "nav": nav, "active": active, "project": _state(request).project.config.name,
         "status": status, **values},
        status_code=status,
    )  # fmt: skip


def guard(permission: str | None):
    return Depends(require(permission))


def add_routes(app: FastAPI) -> None:  # noqa: C901 - one place that lists every page
    # -- sign-in ---------------------------------------------------------------------------

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str | None = None, error: str | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, login_csrf=token, next=safe_next(next), error=error)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=1800, httponly=True, samesite="strict",
                            secure=secure_cookies(request), path="/login")  # fmt: skip
        return response

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not cookie or not secrets.compare_digest(cookie, csrf_token):
            return page(request, "login.html", None, login_csrf=_fresh(request), next=safe_next(next),
                        error="The sign-in form expired; please try again.", status=403)  # fmt: skip
        try:
            signed = auth_service(request).sign_in(username.strip(), password, client_ip(request),
                                                   request.headers.get("user-agent"))  # fmt: skip
        except RateLimited as exc:
            return page(request, "login.html", None, login_csrf=csrf_token, next=safe_next(next),
                        error=str(exc).capitalize() + ".", status=429)  # fmt: skip
        if signed is None:
            return page(request, "login.html", None, login_csrf=csrf_token, next=safe_next(next),
                        error="Wrong user name or password.", status=401, username=username)  # fmt: skip
        session_id, _ = signed
        response = RedirectResponse(safe_next(next), 303)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=12 * 3600, httponly=True, samesite="lax",
                            secure=secure_cookies(request), path="/")  # fmt: skip
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    def _fresh(request: Request) -> str:
        return request.cookies.get(LOGIN_CSRF_COOKIE) or ""

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, principal: P) -> Response:
        auth_service(request).sign_out(request.cookies.get(SESSION_COOKIE, ""), principal, client_ip(request))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    def home(request: Request, principal: P) -> Response:
        for _, _, href, perm in NAV:
            if principal.can(perm):
                return RedirectResponse(href, 303)
        return page(request, "error.html", principal, title="Nothing to show",
                    message="Your role has no pages.", status=403)  # fmt: skip

    @app.get("/me", include_in_schema=False)
    def me(request: Request, principal: P) -> Response:
        role = principal.role
        return page(request, "me.html", principal, role=role, permissions=PERMISSIONS, pii_classes=PII_CLASSES,
                    roles=ROLES)  # fmt: skip

    # -- search and profiles ----------------------------------------------------------------

    @app.get("/search", include_in_schema=False)
    def search_page(request: Request, principal: Annotated[Principal, guard("profiles.view")],
                    q: Annotated[str, Query(max_length=200)] = "") -> Response:  # fmt: skip
        result = _search(request, principal, q) if q else None
        return page(request, "search.html", principal, "search", q=q, result=result)

    @app.get("/search/results", include_in_schema=False)
    def search_results(request: Request, principal: Annotated[Principal, guard("profiles.view")],
                       q: Annotated[str, Query(max_length=200)] = "") -> Response:  # fmt: skip
        result = _search(request, principal, q) if q.strip() else None
        return page(request, "_results.html", principal, q=q, result=result)

    def _search(request: Request, principal: Principal, q: str):
        ctx = context(request, principal)
        return run_search(ctx.store, q, ctx.masker, region=ctx.region)

    @app.get("/profiles/{key:path}/timeline", include_in_schema=False)
    def profile_timeline(
        request: Request,
        key: str,
        principal: Annotated[Principal, guard("events.view")],
        source: Annotated[list[str] | None, Query()] = None,
        type: Annotated[list[str] | None, Query()] = None,
        before: Annotated[str | None, Query(max_length=40)] = None,
        more: bool = False,
    ) -> Response:
        ctx = context(request, principal)
        sources = [s for s in source or [] if s]
        types = [t for t in type or [] if t]
        data = views.timeline(ctx, key, sources=sources, types=types, before=_parse_time(before))
        return page(request, "_timeline_items.html" if more else "_timeline.html", principal,
                    profile_id=key, tl=data, sources=sources, types=types)  # fmt: skip

    @app.get("/profiles/{key:path}", include_in_schema=False)
    def profile_page(request: Request, key: str, principal: Annotated[Principal, guard("profiles.view")]) -> Response:
        ctx = context(request, principal)
        profile_id = views.resolve_profile(ctx.store, key)
        if profile_id is None:
            return page(request, "error.html", principal, "search", title="No such profile",
                        message=f"No profile matches {key!r}. Search by name, email, phone or id.",
                        status=404)  # fmt: skip
        if profile_id != key:
            return RedirectResponse(f"/profiles/{quote(profile_id, safe='')}", 303)
        data = views.profile_360(ctx, profile_id)
        if data is None:
            return page(request, "error.html", principal, "search", title="No such profile",
                        message="This profile is not in the read index yet.", status=404)  # fmt: skip
        auth_service(request).audit(principal, "profile_view", profile_id, {"via": "ui"}, client_ip(request))
        return page(request, "profile.html", principal, "search", p=data, profile_id=profile_id,
                    figs=charts.profile_figures(data))  # fmt: skip

    @app.get("/accounts/{account_id}", include_in_schema=False)
    def account_page(request: Request, account_id: str,
                     principal: Annotated[Principal, guard("profiles.view")]) -> Response:  # fmt: skip
        ctx = context(request, principal)
        data = views.account(ctx, account_id)
        if data is None:
            return page(request, "error.html", principal, "search", title="No such account",
                        message=f"No account {account_id!r}.", status=404)  # fmt: skip
        auth_service(request).audit(principal, "account_view", None, {"account_id": account_id, "via": "ui"},
                                    client_ip(request))  # fmt: skip
        return page(request, "account.html", principal, "search", a=data)

    # -- dashboards -------------------------------------------------------------------------

    @app.get("/dashboards", include_in_schema=False)
    def dashboards_page(request: Request, principal: Annotated[Principal, guard("dashboards.view")]) -> Response:
        ctx = context(request, principal)
        data = dashboards.overview(ctx)
        return page(request, "dashboards.html", principal, "dashboards", d=data,
                    figs=charts.dashboard_figures(data))  # fmt: skip

    @app.get("/dashboards/metrics", include_in_schema=False)
    def dashboards_metrics(request: Request, principal: Annotated[Principal, guard("dashboards.view")]) -> Response:
        ctx = context(request, principal)
        data = dashboards.metrics(ctx, request.app)
        return page(request, "_metrics.html", principal, m=data, figs=charts.metrics_figures(data))

    # -- journeys and experiments (insights.py) ----------------------------------------------

    from panorama.server.ui.insights import add_ui_routes

    add_ui_routes(app)

    # -- sources and write keys -------------------------------------------------------------

    @app.get("/sources", include_in_schema=False)
    def sources_page(request: Request, principal: Annotated[Principal, guard("sources.view")]) -> Response:
        ctx = context(request, principal)
        return page(request, "sources.html", principal, "sources", s=dashboards.sources(ctx))

    @app.post("/sources/keys", include_in_schema=False)
    def create_write_key(request: Request, principal: Annotated[Principal, guard("keys.manage")],
                         source: Annotated[str, Form(max_length=64)]) -> Response:  # fmt: skip
        from panorama.ingest.keys import WriteKeyError, create_key

        s = _state(request)
        ctx = context(request, principal)
        try:
            record, key = create_key(s.store, source.strip())
        except WriteKeyError as exc:
            return page(request, "sources.html", principal, "sources", s=dashboards.sources(ctx), error=str(exc),
                        status=400)  # fmt: skip
        s.keys.reload()
        auth_service(request).audit(principal, "write_key_created", None,
                                    {"key_id": record.id, "source": record.source}, client_ip(request))  # fmt: skip
        return page(request, "sources.html", principal, "sources", s=dashboards.sources(ctx),
                    new_key={"record": record, "key": key})  # fmt: skip

    @app.post("/sources/keys/{key_id}/revoke", include_in_schema=False)
    def revoke_write_key(request: Request, key_id: str,
                         principal: Annotated[Principal, guard("keys.manage")]) -> Response:  # fmt: skip
        from panorama.ingest.keys import WriteKeyError, revoke_key

        s = _state(request)
        ctx = context(request, principal)
        try:
            revoke_key(s.store, key_id)
        except WriteKeyError as exc:
            return page(request, "sources.html", principal, "sources", s=dashboards.sources(ctx), error=str(exc),
                        status=400)  # fmt: skip
        s.keys.reload()
        auth_service(request).audit(principal, "write_key_revoked", None, {"key_id": key_id}, client_ip(request))
        return RedirectResponse("/sources", 303)

    # -- segments ---------------------------------------------------------------------------

    @app.get("/segments", include_in_schema=False)
    def segments_page(request: Request, principal: Annotated[Principal, guard("segments.view")]) -> Response:
        ctx = context(request, principal)
        data = dashboards.segments(ctx)
        return page(request, "segments.html", principal, "segments", seg=data, figs=charts.segment_figures(data))

    # -- administration ---------------------------------------------------------------------

    @app.get("/admin/users", include_in_schema=False)
    def users_page(request: Request, principal: Annotated[Principal, guard("users.manage")]) -> Response:
        return _users_page(request, principal)

    def _users_page(request: Request, principal: Principal, status: int = 200, **extra) -> Response:
        from panorama.auth.tokens import list_tokens
        from panorama.auth.users import list_users

        store = _state(request).store
        return page(request, "users.html", principal, "users", users=list_users(store),
                    tokens=list_tokens(store), roles=ROLES, status=status, **extra)  # fmt: skip

    @app.post("/admin/users", include_in_schema=False)
    def create_user(
        request: Request,
        principal: Annotated[Principal, guard("users.manage")],
        username: Annotated[str, Form(max_length=64)],
        role: Annotated[str, Form(max_length=20)],
        password: Annotated[str, Form(max_length=1024)],
        display_name: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        from panorama.auth.users import UserError

        try:
            user = auth_service(request).create_user(principal, username.strip(), role, password,
                                                     display_name.strip() or None, client_ip(request))  # fmt: skip
        except UserError as exc:
            return _users_page(request, principal, 400, error=str(exc))
        return _users_page(request, principal, message=f"Created {user.username} ({user.role}).")

    @app.post("/admin/users/{username}/disable", include_in_schema=False)
    def disable_user(request: Request, username: str,
                     principal: Annotated[Principal, guard("users.manage")]) -> Response:  # fmt: skip
        from panorama.auth.users import UserError

        try:
            auth_service(request).disable_user(principal, username, client_ip(request))
        except UserError as exc:
            return _users_page(request, principal, 400, error=str(exc))
        return _users_page(request, principal, message=f"Disabled {username}; their sessions ended.")

    @app.post("/admin/users/{username}/enable", include_in_schema=False)
    def enable_user(request: Request, username: str,
                    principal: Annotated[Principal, guard("users.manage")]) -> Response:  # fmt: skip
        from panorama.auth.users import UserError

        try:
            auth_service(request).enable_user(principal, username, client_ip(request))
        except UserError as exc:
            return _users_page(request, principal, 400, error=str(exc))
        return _users_page(request, principal, message=f"Enabled {username}.")

    @app.post("/admin/tokens", include_in_schema=False)
    def create_token(
        request: Request,
        principal: Annotated[Principal, guard("users.manage")],
        name: Annotated[str, Form(max_length=64)],
        role: Annotated[str, Form(max_length=20)],
    ) -> Response:
        from panorama.auth.tokens import TokenError

        try:
            record, token = auth_service(request).create_token(principal, name.strip(), role, client_ip(request))
        except TokenError as exc:
            return _users_page(request, principal, 400, error=str(exc))
        return _users_page(request, principal, new_token={"record": record, "token": token})

    @app.post("/admin/tokens/{token_id}/revoke", include_in_schema=False)
    def revoke_token(request: Request, token_id: str,
                     principal: Annotated[Principal, guard("users.manage")]) -> Response:  # fmt: skip
        from panorama.auth.tokens import TokenError

        try:
            auth_service(request).revoke_token(principal, token_id, client_ip(request))
        except TokenError as exc:
            return _users_page(request, principal, 400, error=str(exc))
        return _users_page(request, principal, message=f"Revoked {token_id}.")

    @app.get("/admin/audit", include_in_schema=False)
    def audit_page(
        request: Request,
        principal: Annotated[Principal, guard("audit.view")],
        profile: Annotated[str | None, Query(max_length=100)] = None,
        actor: Annotated[str | None, Query(max_length=100)] = None,
        action: Annotated[str | None, Query(max_length=40)] = None,
        before: int | None = None,
    ) -> Response:
        from panorama.auth.audit import entries

        rows = entries(_state(request).store, profile_id=profile or None, actor=actor or None,
                       action=action or None, limit=100, before_id=before)  # fmt: skip
        return page(request, "audit.html", principal, "audit", rows=rows, profile=profile or "",
                    actor=actor or "", action=action or "")  # fmt: skip


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", ""))
    except ValueError:
        return None
