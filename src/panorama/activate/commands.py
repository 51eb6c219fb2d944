"""CLI: `panorama activate ...` — the outbox, dead deliveries, retries, timers, file exports.

These read and write the store, so they run while the server is stopped (the running server
owns the store; its delivery workers do this work continuously).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]

activate_app = typer.Typer(help="Triggers and destinations: the outbox, dead deliveries, retries.",
                           no_args_is_help=True)  # fmt: skip


def _t(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def register(app: typer.Typer) -> None:
    @activate_app.command("status")
    def status_cmd(project: ProjectOpt = Path(".")) -> None:
        """Deliveries per destination (pending, delivered, dead, suppressed), timers, trigger errors."""
        from panorama.activate import outbox
        from panorama.activate.triggers import compile_triggers, pending_timers
        from panorama.cli import console, err, project_store

        with project_store(project) as (proj, store):
            rows = {r["destination"]: r for r in outbox.summary(store)}
            timers = pending_timers(store, 1000)
        _, errors = compile_triggers(proj.config)
        for message in errors.values():
            err.print(f"[bold red]error:[/] {message}", highlight=False)
        table = Table("destination", "type", "pending", "delivered", "dead", "suppressed",
                      "oldest pending", "next attempt", "last delivered", title="outbox")  # fmt: skip
        for name in sorted(set(proj.config.destinations) | set(rows)):
            r = rows.get(name, {})
            dest = proj.config.destinations.get(name)
            dead = r.get("dead", 0)
            table.add_row(name, dest.type if dest else "(removed)", f"{r.get('pending', 0):,}",
                          f"{r.get('delivered', 0):,}", f"[red]{dead:,}[/]" if dead else "0",
                          f"{r.get('suppressed', 0):,}", _t(r.get("oldest_pending")),
                          _t(r.get("next_attempt_at")), _t(r.get("last_delivered_at")))  # fmt: skip
        console.print(table)
        console.print(f"{len(timers):,} pending timers" + (
            f"; next due {_t(min(t['due_at'] for t in timers))}" if timers else ""))  # fmt: skip
        if any(r.get("dead") for r in rows.values()):
            console.print("dead deliveries: `panorama activate dead`; retry: `panorama activate retry --all`")

    def _show(status: str | None, destination: str | None, limit: int, as_json: bool, project: Path) -> None:
        from panorama.activate import outbox
        from panorama.cli import console, project_store

        with project_store(project) as (_, store):
            rows = outbox.deliveries(store, status, destination, limit)
        if as_json:
            import orjson

            for r in rows:
                typer.echo(orjson.dumps(r, default=str).decode())
            return
        table = Table("id", "destination", "trigger", "kind", "profile", "status", "attempts",
                      "created", "last attempt", "last error")  # fmt: skip
        for r in rows:
            table.add_row(str(r["id"]), r["destination"], r["trigger"] or "", r["kind"], r["profile_id"] or "",
                          r["status"], str(r["attempts"]), _t(r["created_at"]), _t(r["last_attempt_at"]),
                          r["last_error"] or "")  # fmt: skip
        console.print(table)

    @activate_app.command("deliveries")
    def deliveries_cmd(
        status: Annotated[str | None, typer.Option(help="pending, delivered, dead or suppressed.")] = None,
        destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Outbox rows, newest first."""
        _show(status, destination, limit, as_json, project)

    @activate_app.command("dead")
    def dead_cmd(
        destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Deliveries that gave up (attempts exhausted or a permanent error), with the last error."""
        _show("dead", destination, limit, as_json, project)

    @activate_app.command("retry")
    def retry_cmd(
        ids: Annotated[list[int] | None, typer.Argument(help="Outbox ids (see `activate dead`).")] = None,
        all_dead: Annotated[bool, typer.Option("--all", help="Every dead delivery.")] = False,
        destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Put dead deliveries back in the queue with a fresh attempt budget."""
        from panorama.activate import outbox
        from panorama.cli import console, fail, project_store

        if not ids and not all_dead and not destination:
            fail("give outbox ids, --destination NAME, or --all")
        with project_store(project) as (_, store):
            count = outbox.retry(store, ids or None, destination)
        console.print(f"{count:,} deliveries queued again; `panorama serve` delivers them "
                      "(or `panorama activate deliver` now)")  # fmt: skip

    @activate_app.command("deliver")
    def deliver_cmd(
        destination: Annotated[list[str] | None, typer.Argument(help="Destinations (default: all).")] = None,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Deliver what is due now, once (without the server)."""
        from panorama.activate.destinations import DestinationError
        from panorama.activate.worker import deliver_pending
        from panorama.cli import console, fail, project_store

        with project_store(project) as (proj, store):
            try:
                results = deliver_pending(store, proj, destination)
            except DestinationError as exc:
                fail(str(exc))
        for name, counts in results.items():
            parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing due"
            console.print(f"{name}: {parts}")

    @activate_app.command("export")
    def export_cmd(
        name: Annotated[str, typer.Argument(help="A file destination.")],
        project: ProjectOpt = Path("."),
    ) -> None:
        """Run a file destination once (full, or the delta since its previous export)."""
        from panorama.activate.worker import run_file_export
        from panorama.cli import console, fail, project_store

        with project_store(project) as (proj, store):
            dest = proj.config.destinations.get(name)
            if dest is None or dest.type != "file":
                files = [n for n, d in proj.config.destinations.items() if d.type == "file"]
                fail(f"{name!r} is not a file destination; configured: {', '.join(files) or '(none)'}")
            path, count = run_file_export(store, proj, name)
        console.print(f"wrote {count:,} rows to {path}")

    @activate_app.command("timers")
    def timers_cmd(
        limit: Annotated[int, typer.Option(help="At most this many (soonest first).")] = 50,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Pending timers of "not followed by" triggers (abandoned carts)."""
        from panorama.activate.triggers import pending_timers
        from panorama.cli import console, project_store

        with project_store(project) as (_, store):
            rows = pending_timers(store, limit)
        table = Table("trigger", "profile", "start event", "started (UTC)", "due (UTC)")
        for r in rows:
            table.add_row(r["trigger"], r["profile_id"], r["message_id"], _t(r["started_at"]), _t(r["due_at"]))
        console.print(table)

    app.add_typer(activate_app, name="activate")
