"""REST API of activation (under /api/v1, with the REST API's authentication): the outbox per
destination, deliveries (e.g. the dead ones with their last error), pending timers, and
retrying dead deliveries — what `panorama activate ...` shows, while the server owns the store.

    GET  /api/v1/activation                      outbox per destination, timers, trigger errors
    GET  /api/v1/activation/deliveries?status=dead&destination=crm&limit=50
    GET  /api/v1/activation/timers
    POST /api/v1/activation/retry  {"ids": [..]} | {"destination": "crm"} | {"all": true}

Reading needs `segments.view`; retrying needs `segments.edit` (a signed-in session: API
tokens are read-only).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

PREFIX = "/api/v1/activation"


def _json(data: Any) -> JSONResponse:
    import orjson

    from panorama.activate.outbox import dumps

    return JSONResponse(orjson.loads(dumps(data)))


def add_routes(app: FastAPI) -> None:
    from starlette.concurrency import run_in_threadpool

    from panorama.activate import outbox
    from panorama.activate.triggers import compile_triggers, pending_timers
    from panorama.auth.web import require

    def principal(permission: str):
        return Depends(require(permission, api=True))

    def _state(request: Request):
        return request.app.state.panorama

    @app.get(PREFIX, tags=["activation"], summary="Outbox per destination, pending timers, trigger errors",
             dependencies=[principal("segments.view")])  # fmt: skip
    async def status(request: Request) -> JSONResponse:
        s = _state(request)

        def read() -> dict:
            rows = {r["destination"]: r for r in outbox.summary(s.store)}
            destinations = []
            for name in sorted(set(s.project.config.destinations) | set(rows)):
                dest = s.project.config.destinations.get(name)
                r = rows.get(name, {})
                destinations.append({"destination": name, "type": dest.type if dest else None,
                                     **{k: r.get(k, 0) for k in ("pending", "delivered", "dead", "suppressed")},
                                     "oldest_pending": r.get("oldest_pending"),
                                     "next_attempt_at": r.get("next_attempt_at"),
                                     "last_delivered_at": r.get("last_delivered_at")})  # fmt: skip
            timers = s.store.scalar("SELECT count(*) FROM activation_timers WHERE status = 'pending'")
            _, errors = compile_triggers(s.project.config)
            return {"destinations": destinations, "pending_timers": timers, "trigger_errors": errors}

        return _json(await run_in_threadpool(read))

    @app.get(PREFIX + "/deliveries", tags=["activation"], summary="Outbox rows, newest first",
             dependencies=[principal("segments.view")])  # fmt: skip
    async def deliveries(
        request: Request,
        status: Annotated[str | None, Query(pattern="^(pending|delivered|dead|suppressed)$")] = None,
        destination: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> JSONResponse:
        s = _state(request)
        rows = await run_in_threadpool(outbox.deliveries, s.store, status, destination, limit)
        return _json({"data": rows})

    @app.get(PREFIX + "/timers", tags=["activation"], summary="Pending timers (abandoned carts), soonest first",
             dependencies=[principal("segments.view")])  # fmt: skip
    async def timers(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JSONResponse:
        return _json({"data": await run_in_threadpool(pending_timers, _state(request).store, limit)})

    @app.post(PREFIX + "/retry", tags=["activation"], summary="Queue dead deliveries again",
              dependencies=[principal("segments.edit")])  # fmt: skip
    async def retry(request: Request, body: Annotated[dict, Body()]) -> JSONResponse:
        ids = body.get("ids")
        destination = body.get("destination")
        if not ids and not destination and not body.get("all"):
            raise HTTPException(400, 'give "ids", "destination" or "all": true')
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
            raise HTTPException(400, '"ids" must be a list of outbox ids (integers)')
        count = await run_in_threadpool(outbox.retry, _state(request).store, ids or None, destination)
        return _json({"queued": count})


def install(app: FastAPI) -> None:
    add_routes(app)
