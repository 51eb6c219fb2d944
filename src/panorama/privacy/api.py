"""REST routes for data subject requests (admin only: permission `profiles.delete`).

- `GET /api/v1/privacy/{key}/export`: everything held about the person, as JSON (an admin API
  token works: it is a read);
- `POST /api/v1/privacy/{key}/delete`: delete it; an unsafe request, so it needs a signed-in
  admin's browser session with its CSRF token (`X-CSRF-Token`) — API tokens are read-only;
- `GET /api/v1/privacy/requests`: the requests served (never whose).

The routes call `panorama.privacy.subject`, as `panorama privacy ...` does. The deletion runs
in a worker thread on the server's store; the tombstones take effect in the running
ingestion at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from panorama.auth.policy import Principal
from panorama.auth.web import require

PREFIX = "/api/v1/privacy"
Admin = Annotated[Principal, Depends(require("profiles.delete", api=True))]


def _json(data, status: int = 200) -> JSONResponse:
    import orjson

    body = orjson.loads(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS))
    return JSONResponse(body, status)


def install(app: FastAPI) -> None:
    @app.get(
        PREFIX + "/requests", tags=["privacy"], summary="Data subject requests served (never whose)"
    )
    def requests(request: Request, principal: Admin) -> JSONResponse:
        store = request.app.state.panorama.store
        rows = store.execute(
            "SELECT request_id, kind, requested_at, completed_at, actor, CAST(counts AS VARCHAR) "
            "FROM privacy_requests ORDER BY requested_at"
        ).fetchall()
        import orjson

        return _json({"data": [{"request_id": r[0], "kind": r[1], "requested_at": r[2], "completed_at": r[3],
                                "actor": r[4], "counts": orjson.loads(r[5]) if r[5] else None} for r in rows]})  # fmt: skip

    @app.get(PREFIX + "/{key}/export", tags=["privacy"],
             summary="Everything held about a person (data subject access request)")  # fmt: skip
    async def export(request: Request, key: str, principal: Admin) -> JSONResponse:
        from panorama.privacy.subject import SubjectError, export_subject, record_export

        state = request.app.state.panorama

        def run() -> dict:
            data = export_subject(state.store, key, state.project)
            data["request_id"] = record_export(state.store, principal.label, principal)
            return data

        try:
            data = await run_in_threadpool(run)
        except SubjectError as exc:
            raise HTTPException(404, str(exc)) from None
        return _json(data)

    @app.post(PREFIX + "/{key}/delete", tags=["privacy"],
              summary="Delete everything held about a person and refuse their identifiers from now on")  # fmt: skip
    async def delete(request: Request, key: str, principal: Admin) -> JSONResponse:
        from panorama.privacy.subject import SubjectError, delete_subject

        state = request.app.state.panorama
        try:
            result = await run_in_threadpool(delete_subject, state.store, key, state.project,
                                             principal.label, principal)  # fmt: skip
        except SubjectError as exc:
            raise HTTPException(404, str(exc)) from None
        return _json({"request_id": result.request_id, "profiles": result.profile_ids,
                      "identifiers": result.identifiers, "tombstones": result.tombstones,
                      "rows": result.rows, "files": result.files})  # fmt: skip
