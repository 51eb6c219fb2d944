"""The REST API (read-only, documented at /docs): profiles by id or identifier with traits,
predictions, segments and events — in the shape of Segment's Profile API (`traits`,
`external_ids`, `events`, `links` with `data`/`cursor`) — plus search, accounts, metrics,
segments and sources.

Authentication: an API token (`panorama tokens create NAME --role ROLE`) as
`Authorization: Bearer pat_...`, or as the HTTP Basic user name like Segment's Profile API;
a signed-in browser session works too. The token's role decides what is returned, exactly
as in the web UI (the same `views` functions, the same masking). Every profile read is
written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from panorama.auth.policy import PERMISSIONS, PII_CLASSES, Principal
from panorama.auth.web import auth_service, client_ip, require
from panorama.server.ui import dashboards, views
from panorama.server.ui.search import search as run_search

PREFIX = "/api/v1"


def _principal(permission: str | None):
    return Annotated[Principal, Depends(require(permission, api=True))]


def _ctx(request: Request, principal: Principal) -> views.ViewContext:
    s = request.app.state.panorama
    return views.ViewContext(s.store, s.project, principal, auth_service(request).masker(principal))


def _json(data: Any, status: int = 200) -> JSONResponse:
    import orjson

    from panorama.server.ui.dashboards import to_json

    return JSONResponse(orjson.loads(to_json(data)), status)


def _resolve(request: Request, principal: Principal, key: str, what: str) -> tuple[views.ViewContext, str]:
    ctx = _ctx(request, principal)
    profile_id = views.resolve_profile(ctx.store, key)
    if profile_id is None or views.profile_card(ctx, profile_id) is None:
        raise HTTPException(404, f"no profile matches {key!r} (a profile id, type:value or an identifier)")
    auth_service(request).audit(principal, "profile_view", profile_id, {"via": "api", "what": what},
                                client_ip(request))  # fmt: skip
    return ctx, profile_id


def _cursor(request: Request, next_value: str | None) -> dict:
    url = request.url.path
    if next_value:
        return {"url": url, "has_more": True, "next": next_value}
    return {"url": url, "has_more": False, "next": ""}


def _traits_map(ctx: views.ViewContext, profile_id: str) -> dict:
    data = views.traits(ctx, profile_id)
    return {t["name"]: t["value"] for t in (data or {}).get("all", [])}


KEY_DOC = ("A profile id, an identifier as `type:value` (e.g. `email:ann@example.com`, `user_id:C123`) "
           "or a bare identifier value.")  # fmt: skip


class _Routes:
    """Adds routes to the app itself under PREFIX (so every route is listed in `app.routes`,
    where the role test walks them)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def get(self, path: str, **kw):
        return self.app.get(PREFIX + path, tags=["REST API"], **kw)


def add_routes(app: FastAPI) -> None:  # noqa: C901 - one place that lists every endpoint
    api = _Routes(app)

    @api.get("/me", summary="Who you are and what your role may see")
    def me(principal: _principal(None)) -> dict:
        role = principal.role
        return {"kind": principal.kind, "name": principal.name, "role": role.name,
                "permissions": {p: role.can(p) for p in PERMISSIONS},
                "pii": {c: role.mode(c) for c in PII_CLASSES}}  # fmt: skip

    @api.get("/search", summary="Search customers by name, email, phone or any identifier (fuzzy)")
    def search(request: Request, principal: _principal("profiles.view"),
               q: Annotated[str, Query(min_length=1, max_length=200)],
               limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JSONResponse:  # fmt: skip
        ctx = _ctx(request, principal)
        result = run_search(ctx.store, q, ctx.masker, limit=limit, region=ctx.region)
        return _json({"query": result.query, "searched": result.searched, "note": result.note,
                      "data": [h.__dict__ for h in result.hits]})  # fmt: skip

    @api.get("/profiles/{key}", summary="The whole profile (360° view)", description=KEY_DOC)
    def profile(request: Request, key: str, principal: _principal("profiles.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "profile")
        data = views.profile_360(ctx, profile_id)
        tl = data.pop("timeline")
        data["traits"] = {t["name"]: t["value"] for t in (data["traits"] or {}).get("all", [])} \
            if data["traits"] is not None else None  # fmt: skip
        data["events"] = {"data": tl["events"], "cursor": _cursor(
            request, tl["next_before"].isoformat() if tl.get("next_before") else None)} \
            if principal.can("events.view") else None  # fmt: skip
        data["id"] = profile_id
        return _json(data)

    @api.get("/profiles/{key}/traits", summary="Traits (Segment Profile API shape)", description=KEY_DOC)
    def profile_traits(request: Request, key: str, principal: _principal("profiles.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "traits")
        card = views.profile_card(ctx, profile_id) or {}
        traits = {"name": card.get("name"), "email": card.get("email"), "phone": card.get("phone")}
        traits.update({a["name"]: a["value"] for a in views.golden_attributes(ctx, profile_id)["attributes"]})
        traits.update(_traits_map(ctx, profile_id))
        return _json({"traits": traits, "cursor": _cursor(request, None)})

    @api.get("/profiles/{key}/external_ids", summary="Identifiers (Segment Profile API shape)",
             description=KEY_DOC)  # fmt: skip
    def profile_external_ids(request: Request, key: str, principal: _principal("profiles.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "external_ids")
        data = [{"id": i["value"], "type": i["type"], "collection": "users", "encoding": "none"}
                for i in views.identifiers(ctx, profile_id)]  # fmt: skip
        return _json({"data": data, "cursor": _cursor(request, None)})

    @api.get("/profiles/{key}/events", summary="Events, newest first, paged (Segment Profile API shape)",
             description=KEY_DOC + " Page with `next` (the cursor's `next`).")  # fmt: skip
    def profile_events(
        request: Request,
        key: str,
        principal: _principal("events.view"),
        limit: Annotated[int, Query(ge=1, le=200)] = 25,
        next: Annotated[str | None, Query(max_length=40, description="cursor from the previous page")] = None,
        source: Annotated[list[str] | None, Query()] = None,
        type: Annotated[list[str] | None, Query(description="event name or message type")] = None,
    ) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "events")
        before = None
        if next:
            try:
                before = dt.datetime.fromisoformat(next)
            except ValueError:
                raise HTTPException(400, "next: not a cursor from this API") from None
        tl = views.timeline(ctx, profile_id, sources=source, types=type, before=before, limit=limit)
        data = [{"message_id": e["message_id"], "type": e["type"], "event": e["event"], "source_id": e["source"],
                 "timestamp": e["timestamp"], "properties": e["properties"], "traits": e["traits"],
                 "context": e["context"]} for e in tl["events"]]  # fmt: skip
        nxt = tl["next_before"].isoformat() if tl.get("next_before") else None
        cursor = _cursor(request, nxt)
        if nxt:
            cursor["url"] = f"{request.url.path}?limit={limit}&next={quote(nxt)}"
        return _json({"data": data, "cursor": cursor})

    @api.get("/profiles/{key}/predictions", summary="Predictions with their drivers", description=KEY_DOC)
    def profile_predictions(request: Request, key: str, principal: _principal("predictions.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "predictions")
        return _json({"data": views.predictions(ctx, profile_id) or []})

    @api.get("/profiles/{key}/segments", summary="Segment memberships with entry times", description=KEY_DOC)
    def profile_segments(request: Request, key: str, principal: _principal("segments.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "segments")
        return _json({"data": views.segments(ctx, profile_id) or []})

    @api.get("/profiles/{key}/links", summary="Accounts (B2B) the profile belongs to (Segment's links)",
             description=KEY_DOC)  # fmt: skip
    def profile_links(request: Request, key: str, principal: _principal("profiles.view")) -> JSONResponse:
        ctx, profile_id = _resolve(request, principal, key, "links")
        data = [{"type": "accounts", "external_ids": [{"id": a["account_id"], "type": "account_id"}],
                 "name": a["name"], "domain": a["domain"]} for a in views.accounts(ctx, profile_id)]  # fmt: skip
        return _json({"data": data, "cursor": _cursor(request, None)})

    @api.get("/accounts/{account_id}", summary="A B2B account with its contacts")
    def account(request: Request, account_id: str, principal: _principal("profiles.view")) -> JSONResponse:
        ctx = _ctx(request, principal)
        data = views.account(ctx, account_id)
        if data is None:
            raise HTTPException(404, f"no account {account_id!r}")
        auth_service(request).audit(principal, "account_view", None, {"account_id": account_id, "via": "api"},
                                    client_ip(request))  # fmt: skip
        return _json(data)

    @api.get("/metrics", summary="Customer metrics with their formulas (NPS, CSAT, churn, retention, CLV, ...)",
             description="Computed over the log for [start, end) (default: the last 365 days of data) and the "
                         "profiles matching `segment` (a SQL expression over profile traits).")  # fmt: skip
    def metrics(
        request: Request,
        principal: _principal("dashboards.view"),
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        segment: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> JSONResponse:
        compute = views.optional("panorama.traits.metrics", "compute")
        if compute is None:
            raise HTTPException(501, "customer metrics are not available in this version")
        ctx = _ctx(request, principal)
        # the store keeps naive UTC: a time with an offset is converted, not compared as is
        start, end = (t.astimezone(dt.UTC).replace(tzinfo=None) if t is not None and t.tzinfo else t
                      for t in (start, end))  # fmt: skip
        try:
            return _json(compute(ctx.store, ctx.project.config, start, end, segment))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.get("/dashboards", summary="The dashboards' aggregates: RFM grid, lifecycle, prediction distributions, "
                                    "model cards")  # fmt: skip
    def dashboard(request: Request, principal: _principal("dashboards.view")) -> JSONResponse:
        return _json(dashboards.overview(_ctx(request, principal)))

    @api.get("/segments", summary="Segments with sizes")
    def segments(request: Request, principal: _principal("segments.view")) -> JSONResponse:
        data = dashboards.segments(_ctx(request, principal))
        return _json({"data": data["segments"], "available": data["available"]})

    @api.get("/segments/{name}/members", summary="Current members of a segment")
    def segment_members(request: Request, name: str, principal: _principal("segments.view"),
                        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> JSONResponse:  # fmt: skip
        members = views.optional("panorama.segments.engine", "members")
        ctx = _ctx(request, principal)
        if members is None or name not in getattr(ctx.project.config, "segments", {}):
            raise HTTPException(404, f"no segment {name!r}")
        rows = members(ctx.store, name, limit)
        return _json({"segment": name, "data": [{"profile_id": p, "entered_at": t} for p, t in rows]})

    @api.get("/segments/check", summary="Check a segment expression and count the profiles it matches now",
             description="The segment builder's check (as `panorama segments check`: an unknown column is "
                         "named with the closest known one) and live count; at scale an estimate on a random "
                         "sample of 20,000 profiles (`estimated_from`), stopped after 5 s (`members` null); "
                         "`valid` false with `error` when the expression cannot be used.")  # fmt: skip
    def segment_check(request: Request, principal: _principal("segments.edit"),
                      expression: Annotated[str, Query(max_length=4000)] = "") -> JSONResponse:  # fmt: skip
        from panorama.segments.editor import preview
        from panorama.server.ui.segment_builder import _catalog

        pv = preview(request.app.state.panorama.store, _catalog(request), expression)
        body = {"expression": expression, "valid": pv.ok, "error": pv.error, "members": pv.members,
                "profiles": pv.profiles, "estimated_from": pv.sampled, "sample": pv.sample,
                "columns": pv.columns, "time_dependent": pv.time_dependent, "note": pv.note,
                "seconds": round(pv.seconds, 3)}  # fmt: skip
        return _json(body)

    from panorama.server.ui.insights import add_api_routes

    add_api_routes(api)  # journeys, experiments, hypotheses

    @api.get("/sources", summary="Ingestion status per source and dead letters waiting")
    def sources(request: Request, principal: _principal("sources.view")) -> JSONResponse:
        data = dashboards.sources(_ctx(request, principal))
        return _json({"data": [s.__dict__ for s in data["status"]], "dead_letters": data["dead_letter_total"]})

    @api.get(
        "/server/memory",
        summary="The server's memory: process RSS, Python heap, DuckDB's accounting by tag",
    )
    def server_memory(request: Request, principal: _principal("sources.view")) -> dict:
        from panorama.server.status import memory_report

        return memory_report(request.app.state.panorama.store)


def install(app: FastAPI) -> None:
    add_routes(app)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if request.url.path.startswith(PREFIX):
            return JSONResponse({"error": _code(exc.status_code), "message": exc.detail}, exc.status_code,
                                headers=getattr(exc, "headers", None))  # fmt: skip
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)


def _code(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            501: "not_implemented"}.get(status, "error")  # fmt: skip
