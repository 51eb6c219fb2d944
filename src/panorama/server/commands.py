"""`panorama serve` and `panorama keys ...` (write keys for the HTTP Tracking API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

# The same option as `panorama.cli.ProjectOpt` (not imported: cli imports this module).
ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True
    ),
]

keys_app = typer.Typer(help="Write keys for the HTTP Tracking API (one or more per source).",
                       no_args_is_help=True)  # fmt: skip


KEEP_ALIVE_SECONDS = 75  # idle keep-alive connections (uvicorn's default is 5 s)


def serve(project: Path = Path("."), host: str | None = None, port: int | None = None,
          log_level: str = "info") -> None:  # fmt: skip
    """Run the server for `project` until interrupted (the pipeline calls this too)."""
    import uvicorn

    from panorama.cli import console, fail
    from panorama.config import ConfigError, load_project
    from panorama.server.app import create_app
    from panorama.server.protocol import TrackingProtocol
    from panorama.store import StoreError, open_store

    try:
        proj = load_project(project)
        # Fail early with a clean message if another process holds the store.
        open_store(proj.store_path).close()
    except (ConfigError, StoreError) as exc:
        fail(str(exc))
    host = host or proj.config.server.host
    port = port or proj.config.server.port
    console.print(f"Panorama serving [bold]{proj.config.name}[/] on http://{host}:{port}  "
                  f"(API docs: http://{host}:{port}/docs)")  # fmt: skip
    uvicorn.run(
        create_app(proj),
        host=host,
        port=port,
        http=TrackingProtocol,  # httptools, with the Tracking API answered before ASGI
        loop="uvloop",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        server_header=False,  # no "server: uvicorn" (it tells a scanner what to try)
        # idle keep-alive connections stay open longer than clients keep them (httpx and the
        # SDKs' pools expire theirs after 5-60 s): with uvicorn's default of 5 s a client could
        # reuse a connection the server was closing at that moment and see a dropped request
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        project: ProjectOpt = Path("."),
        host: Annotated[
            str | None, typer.Option(help="Interface (default: server.host, 127.0.0.1).")
        ] = None,
        port: Annotated[int | None, typer.Option(help="Port (default: server.port, 8000).")] = None,
    ) -> None:
        """Serve the HTTP API (Segment-compatible ingestion at /v1/..., docs at /docs)."""
        serve(project, host, port)

    @keys_app.command("create")
    def keys_create(
        source: Annotated[
            str, typer.Argument(help="Source the key's events are stored under (e.g. web, ios).")
        ],
        project: ProjectOpt = Path("."),
    ) -> None:
        """Create a write key for SOURCE and print it (it is shown only once)."""
        from panorama.cli import console, fail, project_store
        from panorama.ingest.keys import WriteKeyError, create_key

        with project_store(project) as (_, store):
            try:
                record, key = create_key(store, source)
            except WriteKeyError as exc:
                fail(str(exc))
        console.print(f"write key for source [bold]{record.source}[/] (id {record.id}); "
                      "store it now, it is not shown again:", highlight=False)  # fmt: skip
        typer.echo(key)

    @keys_app.command("list")
    def keys_list(
        all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
        project: ProjectOpt = Path("."),
    ) -> None:
        """List write keys (id, source, prefix, created, revoked)."""
        from panorama.cli import console, project_store
        from panorama.ingest.keys import list_keys

        with project_store(project) as (_, store):
            keys = list_keys(store, include_revoked=all_keys)
        table = Table("id", "source", "key starts", "created (UTC)", "revoked (UTC)")
        for k in keys:
            table.add_row(k.id, k.source, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
                          f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")  # fmt: skip
        console.print(table)
        if not keys:
            console.print("no write keys; create one with `panorama keys create SOURCE`")

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: Annotated[
            str, typer.Argument(metavar="ID", help="The key's id (see `keys list`).")
        ],
        project: ProjectOpt = Path("."),
    ) -> None:
        """Revoke a write key: requests with it get 401 from then on."""
        from panorama.cli import console, fail, project_store
        from panorama.ingest.keys import WriteKeyError, revoke_key

        with project_store(project) as (_, store):
            try:
                record = revoke_key(store, key_id)
            except WriteKeyError as exc:
                fail(str(exc))
        console.print(f"revoked {record.id} (source {record.source})")

    app.add_typer(keys_app, name="keys")
