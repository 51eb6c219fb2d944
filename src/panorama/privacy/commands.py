"""`panorama privacy ...` (data subject requests) and `panorama consent ...`: the same functions
the REST API calls. The command line acts as admin (it owns the store file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True
    ),
]
KeyArg = Annotated[str, typer.Argument(
    help="A profile id, type:value (e.g. email:ann@example.com) or an identifier value.")]  # fmt: skip

privacy_app = typer.Typer(help="Data subject requests: export or delete everything held about a person.",
                          no_args_is_help=True)  # fmt: skip


@privacy_app.command("export")
def privacy_export(
    key: KeyArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here (default: stdout).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Everything held about a person as JSON: profile, identifiers, events, records, traits,
    predictions, segment memberships, deliveries, dead letters, consent, who looked at it."""
    import orjson

    from panorama.cli import console, fail, project_store
    from panorama.privacy.subject import SubjectError, export_subject, record_export

    with project_store(project) as (proj, store):
        try:
            data = export_subject(store, key, proj)
        except SubjectError as exc:
            fail(str(exc))
        data["request_id"] = record_export(store, "cli")
    body = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if out is None:
        typer.echo(body.decode())
        return
    out.write_bytes(body)
    console.print(f"wrote {out}: {len(data['events']):,} events, {len(data['records']):,} records "
                  f"({data['request_id']})", highlight=False)  # fmt: skip


@privacy_app.command("delete")
def privacy_delete(
    key: KeyArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    compact_store: Annotated[
        bool,
        typer.Option(
            "--compact/--no-compact",
            help="Rewrite the store file afterwards so no freed block keeps the deleted bytes.",
        ),
    ] = True,  # fmt: skip
    project: ProjectOpt = Path("."),
) -> None:
    """Delete everything held about a person, everywhere in the store and in the file exports
    Panorama writes, and refuse their identifiers from now on (hashed tombstones)."""
    from panorama.cli import console, fail, project_store
    from panorama.privacy.subject import SubjectError, collect, compact, delete_subject

    with project_store(project) as (proj, store):
        try:
            subject = collect(store, key, proj)
        except SubjectError as exc:
            fail(str(exc))
        if not yes:
            typer.confirm(f"delete {len(subject.profile_ids)} profile id(s), {subject.events:,} events, "
                          f"{subject.records:,} records and {len(subject.pairs)} identifiers of {key!r}?",
                          abort=True)  # fmt: skip
        try:
            result = delete_subject(store, key, proj, actor="cli")
        except SubjectError as exc:
            fail(str(exc))
    table = Table("table", "rows", title=f"deleted ({result.request_id})")
    for name, n in sorted(result.rows.items()):
        table.add_row(name, f"{n:,}")
    for name, n in sorted(result.files.items()):
        table.add_row(f"file {name}", f"{n:,}")
    console.print(table)
    console.print(f"{result.tombstones} identifier tombstone(s) added: ingestion refuses them from now on",
                  highlight=False)  # fmt: skip
    if compact_store:
        before, after = compact(proj.store_path)
        console.print(
            f"store rewritten without freed blocks: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB"
        )


@privacy_app.command("compact")
def privacy_compact(project: ProjectOpt = Path(".")) -> None:
    """Rewrite the store file so that no freed block keeps deleted data (after deletions made
    through the API; stop the server first)."""
    from panorama.cli import console, project_store
    from panorama.privacy.subject import compact

    with project_store(project) as (proj, _):
        pass  # checks the project and that no other process holds the store
    before, after = compact(proj.store_path)
    console.print(f"store rewritten: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB")


@privacy_app.command("trace")
def privacy_trace(
    values: Annotated[
        list[str], typer.Argument(help="Values to look for (identifiers, profile ids).")
    ],
    project: ProjectOpt = Path("."),
) -> None:
    """Search every text column of every table for the values (whole words, any case)."""
    from panorama.cli import console, project_store
    from panorama.privacy.subject import trace

    with project_store(project, read_only=True) as (_, store):
        found = trace(store, values)
    if not found:
        console.print("no trace found")
        return
    table = Table("table.column", "rows")
    for name, n in found.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    raise typer.Exit(1)


@privacy_app.command("requests")
def privacy_requests(project: ProjectOpt = Path(".")) -> None:
    """Data subject requests served: when, by whom, how many rows (never whose)."""
    from panorama.cli import console, project_store

    with project_store(project) as (_, store):
        rows = store.execute("SELECT request_id, kind, completed_at, actor, CAST(counts AS VARCHAR) "
                             "FROM privacy_requests ORDER BY requested_at").fetchall()  # fmt: skip
    table = Table("request", "kind", "completed (UTC)", "by", "counts")
    for r in rows:
        table.add_row(r[0], r[1], f"{r[2]:%Y-%m-%d %H:%M:%S}", r[3] or "", r[4] or "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")
    from panorama.modules import optional_import

    consent = optional_import("panorama.privacy.consent_commands")
    if consent is not None:
        app.add_typer(consent.consent_app, name="consent")
