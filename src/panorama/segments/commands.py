"""CLI: `panorama segments ...`; `refresh(project)` is the pipeline's step.

    panorama segments                   sizes of every segment (same as `segments list`)
    panorama segments check "EXPR"      validate an expression, show what it compiles to
    panorama segments refresh [NAME..]  evaluate over all profiles, record entries and exits
    panorama segments members NAME      current members (with entry time)
    panorama segments history NAME      entries and exits with their time and cause
    panorama segments export NAME -o F  members to CSV/Parquet (full, or --since for the delta)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]

segments_app = typer.Typer(help="Segments: SQL conditions over the profile, kept current.",
                           invoke_without_command=True)  # fmt: skip


def _time(text: str | None, option: str) -> dt.datetime | None:
    from panorama.cli import fail

    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r}: not a time; use YYYY-MM-DD or an ISO timestamp")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _segset(store, proj):
    from panorama.segments.engine import SegmentSet

    return SegmentSet.build(store, proj.config)


def refresh(project: Path = Path("."), names: list[str] | None = None, as_of: dt.datetime | None = None) -> None:
    """Evaluate segments over every profile (the pipeline's step)."""
    from panorama.cli import console, err, fail, project_store
    from panorama.segments.engine import refresh as run

    with project_store(project) as (proj, store):
        if not proj.config.segments:
            console.print("no segments configured (key `segments` in panorama.yaml)")
            return
        unknown = [n for n in names or [] if n not in proj.config.segments]
        if unknown:
            fail(f"unknown segment(s) {', '.join(unknown)}; configured: {', '.join(proj.config.segments)}")
        segset = _segset(store, proj)
        result = run(store, segset, names or None, now=as_of)
        for message in result.errors.values():
            err.print(f"[bold red]error:[/] {message}", highlight=False)
        table = Table("segment", "members", "entered", "exited", title="segments refresh")
        sizes = {i.name: i.members for i in _list(store, proj, segset)}
        for name in result.evaluated:
            table.add_row(name, f"{sizes.get(name, 0):,}", f"{result.entered[name]:,}", f"{result.exited[name]:,}")
        console.print(table)
        console.print(f"{len(result.evaluated)} segments in {result.seconds:.2f} s")
        if result.errors:
            raise typer.Exit(1)


def _list(store, proj, segset=None):
    from panorama.segments.engine import list_segments

    return list_segments(store, proj.config, segset)


def register(app: typer.Typer) -> None:
    @segments_app.callback()
    def main(ctx: typer.Context, project: ProjectOpt = Path(".")) -> None:
        """Without a command: list segments with their sizes."""
        if ctx.invoked_subcommand is None:
            list_cmd(project=project)

    @segments_app.command("list")
    def list_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Segments with their size, whether time re-checks them, and errors."""
        from panorama.cli import console, project_store

        with project_store(project) as (proj, store):
            segset = _segset(store, proj)
            infos = _list(store, proj, segset)
        if as_json:
            import orjson

            for i in infos:
                typer.echo(orjson.dumps(i.__dict__, default=str).decode())
            return
        table = Table("segment", "members", "time-dependent", "refreshed (UTC)", "expression")
        for i in infos:
            expression = i.expression if not i.error else f"[red]{i.error}[/]"
            table.add_row(i.name, f"{i.members:,}", "yes" if i.time_dependent else "",
                          f"{i.refreshed_at:%Y-%m-%d %H:%M:%S}" if i.refreshed_at else "never", expression)  # fmt: skip
        console.print(table)
        if not infos:
            console.print("no segments configured (key `segments` in panorama.yaml; docs/segments.md)")

    @segments_app.command("check")
    def check_cmd(
        expression: Annotated[str, typer.Argument(help="A segment expression, e.g. \"orders >= 2\".")],
        count: Annotated[bool, typer.Option(help="Also count the profiles that match now.")] = True,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Validate an expression against this project's profile columns."""
        from panorama.cli import console, fail, project_store
        from panorama.ingest.log import utcnow
        from panorama.segments.catalog import build_catalog
        from panorama.segments.engine import check_expression, evaluation_sql
        from panorama.segments.language import SegmentError

        with project_store(project) as (_, store):
            catalog = build_catalog(store)
            try:
                compiled = check_expression(store, expression, catalog)
            except SegmentError as exc:
                fail(str(exc))
            console.print("[green]ok[/]" + (" (re-checked as time passes)" if compiled.time_dependent else ""))
            console.print(f"columns: {', '.join(sorted(compiled.columns)) or '-'}", highlight=False)
            if count:
                sql = evaluation_sql(catalog, {"x": compiled}, None, utcnow())
                n = store.scalar(f"SELECT count(*) FROM ({sql}) WHERE x")
                total = store.scalar(f"SELECT count(*) FROM ({catalog.universe_sql})")
                console.print(f"matches {n:,} of {total:,} profiles now")

    @segments_app.command("columns")
    def columns_cmd(project: ProjectOpt = Path(".")) -> None:
        """The profile columns a segment can use, with their type and origin."""
        from panorama.cli import console, project_store
        from panorama.segments.catalog import build_catalog

        with project_store(project) as (_, store):
            catalog = build_catalog(store)
        table = Table("column", "type", "from")
        for name, sql_type in sorted(catalog.columns.items()):
            table.add_row(name, sql_type, catalog.owner.get(name, ""))
        console.print(table)
        console.print(f"profiles keyed by {'identity resolution' if catalog.mode == 'resolved' else 'user_id / anonymous_id (no identity graph yet)'}")

    @segments_app.command("refresh")
    def refresh_cmd(
        names: Annotated[list[str] | None, typer.Argument(help="Segments (default: all).")] = None,
        as_of: Annotated[str | None, typer.Option("--as-of", help="Evaluate as of this time (UTC).")] = None,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Evaluate segments over every profile; record entries and exits (triggers fire)."""
        refresh(project, names, _time(as_of, "--as-of"))

    @segments_app.command("members")
    def members_cmd(
        name: Annotated[str, typer.Argument(help="The segment.")],
        limit: Annotated[int, typer.Option(help="At most this many (0: all).")] = 100,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Current members with the time they entered."""
        from panorama.cli import console, fail, project_store
        from panorama.segments.engine import members

        with project_store(project) as (proj, store):
            if name not in proj.config.segments:
                fail(f"unknown segment {name!r}; configured: {', '.join(proj.config.segments) or '(none)'}")
            rows = members(store, name, limit or None)
        if as_json:
            import orjson

            for pid, entered in rows:
                typer.echo(orjson.dumps({"profile_id": pid, "entered_at": entered}).decode())
            return
        table = Table("profile_id", "entered (UTC)", title=f"{name}: {len(rows):,} shown")
        for pid, entered in rows:
            table.add_row(pid, f"{entered:%Y-%m-%d %H:%M:%S}")
        console.print(table)

    @segments_app.command("history")
    def history_cmd(
        name: Annotated[str, typer.Argument(help="The segment.")],
        profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Entries and exits, with their time and cause (realtime, clock, batch, backfill)."""
        from panorama.cli import console, project_store
        from panorama.segments.engine import history

        with project_store(project) as (_, store):
            rows = history(store, name, profile)
        table = Table("profile_id", "entered (UTC)", "by", "exited (UTC)", "by")
        for r in rows:
            table.add_row(r["profile_id"], f"{r['entered_at']:%Y-%m-%d %H:%M:%S}", r["entered_by"],
                          f"{r['exited_at']:%Y-%m-%d %H:%M:%S}" if r["exited_at"] else "", r["exited_by"] or "")  # fmt: skip
        console.print(table)

    @segments_app.command("export")
    def export_cmd(
        name: Annotated[str, typer.Argument(help="The segment.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet file.")],
        columns: Annotated[str | None, typer.Option(help="Profile columns to add, comma-separated.")] = None,
        since: Annotated[str | None, typer.Option(
            help="Delta: entries and exits after this time (UTC) instead of the members.")] = None,
        project: ProjectOpt = Path("."),
    ) -> None:
        """Write the members (or the changes since a time) to a CSV or Parquet file."""
        from panorama.cli import console, fail, project_store
        from panorama.segments.catalog import build_catalog
        from panorama.segments.engine import export
        from panorama.segments.language import SegmentError

        when = _time(since, "--since")
        with project_store(project) as (proj, store):
            if name not in proj.config.segments:
                fail(f"unknown segment {name!r}; configured: {', '.join(proj.config.segments) or '(none)'}")
            cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
            try:
                count = export(store, build_catalog(store), name, out, cols, when)
            except (SegmentError, ValueError) as exc:
                fail(str(exc))
        console.print(f"wrote {count:,} rows to {out}")

    app.add_typer(segments_app, name="segments")
