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

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from panorama.auth.policy import Principal
from panorama.auth.web import require

PREFIX = "/api/v1/privacy"
Admin = Annotated[Principal, Depends(require("profiles.delete", api=True))]
AdminPage = Annotated[Principal, Depends(require("profiles.delete"))]


def _json(data, status: int = 200) -> JSONResponse:
    import orjson

    body = orjson.loads(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS))
    return JSONResponse(body, status)


def install(app: FastAPI) -> None:
    _install_pages(app)

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
            state.writer.flush()  # what the server acknowledged, in the log
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
        from panorama.privacy.subject import SubjectError

        state = request.app.state.panorama
        try:
            result = await run_in_threadpool(_delete, state, state.store, key, state.project,
                                             principal.label, principal)  # fmt: skip
        except SubjectError as exc:
            raise HTTPException(404, str(exc)) from None
        return _json({"request_id": result.request_id, "profiles": result.profile_ids,
                      "identifiers": result.identifiers, "tombstones": result.tombstones,
                      "rows": result.rows, "files": result.files})  # fmt: skip


def _delete(state, *args):
    """`delete_subject` once everything the server acknowledged is in the log (the journal
    may still hold the person's latest events)."""
    from panorama.privacy.subject import delete_subject

    state.writer.flush()
    return delete_subject(*args)


def _install_pages(app: FastAPI) -> None:
    """The admin page: export (a JSON download) and delete, and the requests served."""

    def requests_rows(store) -> list:
        return store.execute("SELECT request_id, kind, completed_at, actor, CAST(counts AS VARCHAR) "
                             "FROM privacy_requests ORDER BY requested_at DESC LIMIT 200").fetchall()  # fmt: skip

    def render(request: Request, principal: Principal, status: int = 200, **values) -> Response:
        from panorama.server.ui.routes import page

        store = request.app.state.panorama.store
        return page(request, "privacy.html", principal, "privacy", status=status,
                    requests=requests_rows(store), **values)  # fmt: skip

    @app.get("/admin/privacy", include_in_schema=False)
    def privacy_page(request: Request, principal: AdminPage) -> Response:
        return render(request, principal)

    @app.get("/admin/privacy/export", include_in_schema=False)
    async def privacy_export_page(
        request: Request, principal: AdminPage, key: str | None = None
    ) -> Response:
        import orjson

        from panorama.privacy.subject import SubjectError, export_subject, record_export

        if not key or not key.strip():
            return RedirectResponse("/admin/privacy", 303)
        state = request.app.state.panorama

        def run() -> dict:
            state.writer.flush()  # what the server acknowledged, in the log
            data = export_subject(state.store, key, state.project)
            data["request_id"] = record_export(state.store, principal.label, principal)
            return data

        try:
            data = await run_in_threadpool(run)
        except SubjectError as exc:
            return render(request, principal, 404, error=str(exc))
        body = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        return Response(body, media_type="application/json", headers={
            "content-disposition": f'attachment; filename="{data["request_id"]}.json"'})  # fmt: skip

    @app.post("/admin/privacy/delete", include_in_schema=False)
    async def privacy_delete_page(request: Request, principal: AdminPage,
                                  key: Annotated[str, Form(max_length=300)],
                                  confirm: Annotated[str, Form(max_length=20)] = "") -> Response:  # fmt: skip
        from panorama.privacy.subject import SubjectError

        if confirm != "DELETE":
            return render(request, principal, 400, error="type DELETE to confirm the deletion")
        state = request.app.state.panorama
        try:
            result = await run_in_threadpool(_delete, state, state.store, key, state.project,
                                             principal.label, principal)  # fmt: skip
        except SubjectError as exc:
            return render(request, principal, 404, error=str(exc))
        return render(
            request,
            principal,
            result=result,
            message=f"Deleted; {result.tombstones} identifier(s) will be refused from now on.",
        )
