"""The segment builder and a segment's page: edit an expression with a live count and the
validation errors as you type, save it (into panorama.yaml, taken by the running server at
once), its members, a CSV export and the triggers that act on it.

Checks and counts come from `panorama.segments.editor` (the same compiler and checks as
`panorama segments check`); saving goes through the server's segments runtime, which
backfills the segment and evaluates it in real time from then on.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from panorama.auth.policy import Principal
from panorama.auth.web import auth_service, client_ip
from panorama.server.ui.routes import context, guard, page
from panorama.server.ui.search import profile_cards
from panorama.store import one

MEMBERS_PAGE = 100
SAVE_WAIT = 15.0  # seconds a save waits for the segment's first evaluation
log = logging.getLogger("panorama.ui.segments")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")  # as panorama.config checks


def _runtime(request: Request):
    from panorama.segments.realtime import runtime_for

    return runtime_for(request.app.state.panorama.store)


def _catalog(request: Request):
    runtime = _runtime(request)
    if runtime is not None:
        return runtime.segset.catalog
    from panorama.segments.catalog import build_catalog

    return build_catalog(request.app.state.panorama.store)


def _config(request: Request):
    return request.app.state.panorama.project.config


def _builder(request: Request, principal: Principal, name: str = "", expression: str = "",
             description: str = "", existing: bool = False, status: int = 200, **extra) -> Response:  # fmt: skip
    from panorama.segments.editor import preview, reference

    store = request.app.state.panorama.store
    catalog = _catalog(request)
    result = preview(store, catalog, expression) if expression.strip() else None
    return page(request, "segment_edit.html", principal, "segments", seg_name=name, expression=expression,
                description=description, existing=existing, pv=result, ref=reference(catalog),
                status=status, **extra)  # fmt: skip


def _members(
    request: Request, principal: Principal, name: str, limit: int
) -> tuple[list[dict], int]:
    ctx = context(request, principal)
    total = one(ctx.store.execute("SELECT count(*) FROM segment_membership WHERE segment = ? AND exited_at IS NULL",
                              [name]))[0]  # fmt: skip
    if not limit:
        return [], int(total or 0)
    rows = ctx.store.execute(
        f"SELECT profile_id, entered_at, entered_by FROM segment_membership WHERE segment = ? AND exited_at IS NULL "
        f"ORDER BY entered_at DESC, profile_id LIMIT {int(limit)}", [name]).fetchall()  # fmt: skip
    cards = (
        profile_cards(ctx.store, [r[0] for r in rows])
        if ctx.store.table_exists("ui_profiles")
        else {}
    )
    out = []
    for profile_id, entered_at, entered_by in rows:
        card = cards.get(profile_id) or {}
        out.append({"profile_id": profile_id, "entered_at": entered_at, "entered_by": entered_by,
                    "name": ctx.masker.value("name", card.get("name")),
                    "email": ctx.masker.value("contact", card.get("email")), "indexed": bool(card)})  # fmt: skip
    return out, int(total or 0)


def add_routes(app: FastAPI) -> None:
    @app.get("/segments/new", include_in_schema=False)
    def segment_new(request: Request, principal: Annotated[Principal, guard("segments.edit")],
                    expression: Annotated[str, Query(max_length=4000)] = "") -> Response:  # fmt: skip
        return _builder(request, principal, expression=expression)

    @app.get("/segments/preview", include_in_schema=False)
    def segment_preview(request: Request, principal: Annotated[Principal, guard("segments.edit")],
                        expression: Annotated[str, Query(max_length=4000)] = "",
                        name: Annotated[str, Query(max_length=64)] = "") -> Response:  # fmt: skip
        from panorama.segments.editor import preview

        result = preview(request.app.state.panorama.store, _catalog(request), expression)
        current = None
        if name and name in _config(request).segments:
            _, current = _members(request, principal, name, 0)
        return page(request, "_segment_preview.html", principal, pv=result, current=current)

    @app.post("/segments", include_in_schema=False)
    def segment_save(
        request: Request,
        principal: Annotated[Principal, guard("segments.edit")],
        name: Annotated[str, Form(max_length=64)],
        expression: Annotated[str, Form(max_length=4000)],
        description: Annotated[str, Form(max_length=500)] = "",
        existing: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        from panorama.config import ConfigError
        from panorama.segments.editor import save_definition
        from panorama.segments.engine import check_expression
        from panorama.segments.language import SegmentError

        state = request.app.state.panorama
        name = name.strip()
        expression = expression.strip()
        is_existing = existing == "1"

        def again(error: str) -> Response:
            return _builder(
                request, principal, name, expression, description, is_existing, 400, error=error
            )

        if not NAME.fullmatch(name):
            return again(
                "Name: use letters, digits, '_' or '-', starting with a letter (e.g. lapsed_vips)."
            )
        if not is_existing and name in state.project.config.segments:
            return again(
                f"A segment named {name} exists already: open it from the list to edit it."
            )
        try:
            check_expression(state.store, expression, _catalog(request))
        except SegmentError as exc:
            return again(str(exc))
        try:
            config = save_definition(state.project, name, expression, description)
        except ConfigError as exc:
            return again(str(exc))
        state.project.config = config
        runtime = _runtime(request)
        seconds = None
        if runtime is not None:
            done: dict = {}

            def backfill() -> None:
                try:
                    done["result"] = runtime.apply_config(config, [name])
                except Exception:  # the clock's next refresh retries it
                    log.exception("segments: evaluating the saved segment %s failed", name)

            # evaluate it over every profile; answer after SAVE_WAIT seconds at most (a large
            # project: the page says it is still being evaluated)
            worker = threading.Thread(target=backfill, name="panorama-segment-save", daemon=True)
            worker.start()
            worker.join(SAVE_WAIT)
            seconds = done["result"].seconds if "result" in done else "pending"
        auth_service(request).audit(principal, "segment_saved", None,
                                    {"segment": name, "expression": expression}, client_ip(request))  # fmt: skip
        note = "saved" + (
            f"-{seconds:.2f}" if isinstance(seconds, float) else f"-{seconds}" if seconds else ""
        )
        return RedirectResponse(f"/segments/{quote(name, safe='')}?saved={note}", 303)

    @app.get("/segments/{name}/export.csv", include_in_schema=False)
    def segment_export(request: Request, name: str,
                       principal: Annotated[Principal, guard("segments.view")]) -> Response:  # fmt: skip
        import tempfile
        from pathlib import Path

        from starlette.background import BackgroundTask

        from panorama.segments.engine import export

        if name not in _config(request).segments:
            return page(request, "error.html", principal, "segments", title="No such segment",
                        message=f"No segment {name!r}.", status=404)  # fmt: skip
        directory = Path(tempfile.mkdtemp(prefix="panorama-export-"))
        out = directory / "members.csv"
        rows = export(request.app.state.panorama.store, _catalog(request), name, out)
        auth_service(request).audit(principal, "segment_export", None, {"segment": name, "rows": rows, "via": "ui"},
                                    client_ip(request))  # fmt: skip

        def cleanup() -> None:
            out.unlink(missing_ok=True)
            directory.rmdir()

        filename = re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".csv"
        return FileResponse(out, media_type="text/csv; charset=utf-8", filename=filename,
                            background=BackgroundTask(cleanup))  # fmt: skip

    @app.get("/segments/{name}", include_in_schema=False)
    def segment_page(request: Request, name: str, principal: Annotated[Principal, guard("segments.view")],
                     saved: Annotated[str | None, Query(max_length=40)] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = MEMBERS_PAGE) -> Response:  # fmt: skip
        from panorama.segments.editor import reference, triggers_for

        config = _config(request)
        seg = config.segments.get(name)
        if seg is None:
            return page(request, "error.html", principal, "segments", title="No such segment",
                        message=f"No segment {name!r}.", status=404)  # fmt: skip
        members, total = _members(request, principal, name, limit)
        runtime = _runtime(request)
        error = runtime.segset.errors.get(name) if runtime is not None else None
        seconds = None
        # the first evaluation of this definition has not finished yet
        state = one(request.app.state.panorama.store.execute(
            "SELECT refreshed_at IS NULL OR refreshed_at < updated_at FROM segment_definitions "
            "WHERE segment = ?", [name]))  # fmt: skip
        pending = bool(saved) and (state is None or bool(state[0]))
        if saved and saved.startswith("saved-") and not pending:
            try:
                seconds = float(saved.removeprefix("saved-"))
            except ValueError:
                seconds = None
        return page(request, "segment.html", principal, "segments", seg_name=name, seg=seg, members=members,
                    total=total, limit=limit, triggers=triggers_for(config, name), seg_error=error,
                    saved=bool(saved), saved_seconds=seconds, pending=pending, can_edit=principal.can("segments.edit"),
                    ref=reference(_catalog(request)) if principal.can("segments.edit") else None,
                    expression=seg.where, description=seg.description or "", existing=True, pv=None)  # fmt: skip
