"""The `panorama` command. Every command takes `--project DIR` (default: the current directory).

Commands call the same module functions as the HTTP API and the web UI; no logic lives here
beyond argument handling and presentation.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from panorama.config import ConfigError, Project, init_project, load_project
from panorama.store import Store, StoreError, open_store

app = typer.Typer(
    name="panorama",
    help="Panorama: an open-source Customer Data Platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo_app = typer.Typer(help="The demo project: realistic synthetic multi-source data.", no_args_is_help=True)
export_app = typer.Typer(help="Export identities, identifiers and profiles (CSV or Parquet).", no_args_is_help=True)
deadletters_app = typer.Typer(help="Inspect and replay rejected input.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(export_app, name="export")
app.add_typer(deadletters_app, name="deadletters")
# Shared by modules that measure accuracy (`evaluate identity`, `evaluate predictions`, ...):
# each module's `register(app)` adds its command to this group.
evaluate_app = typer.Typer(help="Measure accuracy: against a truth file or on held-out time windows.",
                           no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")

console = Console()
err = Console(stderr=True, soft_wrap=True)

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]


class _Fail(Exception):
    pass


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def project_store(project_dir: Path, read_only: bool = False) -> Iterator[tuple[Project, Store]]:
    """Load the project and open its store, turning known errors into clean messages."""
    try:
        project = load_project(project_dir)
        store = open_store(project.store_path, read_only=read_only)
    except (ConfigError, StoreError) as exc:
        fail(str(exc))
    try:
        yield project, store
    except duckdb.Error as exc:  # the store could not be written (disk full, an I/O error)
        if not isinstance(exc, duckdb.IOException) and "Could not write" not in str(exc):
            raise
        fail(_store_failure(str(exc)))
    finally:
        store.close()


def _store_failure(text: str) -> str:
    full = any(s in text for s in ("File too large", "No space left", "Disk full", "disk is full"))
    hint = ("the disk is full (or a file size limit was reached): free space and run the same command again; "
            "what was committed is kept and nothing is loaded twice") if full else \
        "run the same command again; what was committed is kept"  # fmt: skip
    return f"the store: {text}\n{hint}"


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory for the new project.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: the directory's name).")] = None,
    region: Annotated[str, typer.Option(help="Default phone region (ISO 3166 code).")] = "US",
) -> None:
    """Create DIR/panorama.yaml."""
    try:
        file = init_project(directory, name, region.upper())
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"created {file}")


@app.command()
def ingest(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to load (default: all).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Load configured sources into the log; bad rows go to dead letters."""
    from panorama.ingest.files import IngestError, ingest_source

    with project_store(project) as (proj, store):
        names = sources or list(proj.config.sources)
        if not names:
            fail("no sources configured in panorama.yaml (key `sources`)")
        unknown = [n for n in names if n not in proj.config.sources]
        if unknown:
            fail(f"unknown source(s) {', '.join(unknown)}; configured: {', '.join(proj.config.sources)}")
        table = Table("source", "file", "read", "loaded", "duplicate", "rejected", "rows/s", title="ingest")
        failed = []
        with _progress() as progress:
            for name in names:
                task = progress.add_task(name, total=None)

                def update(done: int, expected: int, task=task) -> None:
                    progress.update(task, completed=done, total=max(expected, done) or None)

                try:
                    r = ingest_source(store, proj, name, update)
                except IngestError as exc:
                    failed.append(name)
                    err.print(f"[bold red]error:[/] {exc}", highlight=False)
                    continue
                progress.update(task, completed=r.rows_read, total=r.rows_read)
                table.add_row(name, r.file, f"{r.rows_read:,}", f"{r.loaded:,}", f"{r.duplicates:,}",
                              f"{r.rejected:,}", f"{r.rows_per_second:,.0f}")  # fmt: skip
        console.print(table)
        rejected = store.scalar("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        if rejected:
            console.print(f"{rejected:,} rejected rows in dead letters: `panorama deadletters list`")
        if failed:
            raise typer.Exit(1)


def ingest_all(project: Path) -> None:
    """Every configured source (the pipeline's first step)."""
    ingest(sources=None, project=project)


@app.command()
def status(project: ProjectOpt = Path(".")) -> None:
    """What the store holds, per source."""
    from panorama.ingest.status import source_status

    with project_store(project) as (proj, store):
        table = Table("source", "kind", "records", "events", "dead letters", "last ingest")
        for row in source_status(store, proj):
            table.add_row(row.source, row.kind, f"{row.records:,}", f"{row.events:,}",
                          f"{row.dead_letters:,}", str(row.last_ingest or "-"))  # fmt: skip
        console.print(table)


@deadletters_app.command("list")
def deadletters_list(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Rejected rows with file, line, field and reason."""
    from panorama.ingest.status import dead_letters

    with project_store(project) as (_, store):
        rows = dead_letters(store, source, limit)
        if as_json:
            import orjson

            for r in rows:
                typer.echo(orjson.dumps(r).decode())
            return
        table = Table("id", "source", "file", "line", "field", "reason")
        for r in rows:
            table.add_row(str(r["id"]), r["source"] or "", r["file"] or "", str(r["line"] or ""),
                          r["field"] or "", r["reason"])  # fmt: skip
        console.print(table)


@deadletters_app.command("replay")
def deadletters_replay(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Retry rejected rows with the current config (e.g. after fixing a format)."""
    from panorama.ingest.files import replay_dead_letters

    with project_store(project) as (proj, store):
        result = replay_dead_letters(store, proj, source)
    console.print(f"replayed {result.replayed:,}; still failing {result.still_failing:,}")


def _export(kind: str, out: Path, project: Path) -> None:
    from panorama.profiles import export

    with project_store(project) as (_, store):
        try:
            count = getattr(export, f"export_{kind}")(store, out)
        except export.ExportError as exc:
            fail(str(exc))
    console.print(f"wrote {count:,} rows to {out}")


@export_app.command("identities")
def export_identities(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet file.")],
    project: ProjectOpt = Path("."),
) -> None:
    """source, record_id, profile_id for every record and event."""
    _export("identities", out, project)


@export_app.command("identifiers")
def export_identifiers(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet file.")],
    project: ProjectOpt = Path("."),
) -> None:
    """profile_id, type, value for every identifier."""
    _export("identifiers", out, project)


@export_app.command("profiles")
def export_profiles(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet file.")],
    project: ProjectOpt = Path("."),
) -> None:
    """One row per profile."""
    _export("profiles", out, project)


@demo_app.command("generate")
def demo_generate(
    directory: Annotated[Path, typer.Argument(help="Where to write the demo project.")],
    customers: Annotated[int, typer.Option(min=10, help="Number of people.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
) -> None:
    """Write a realistic multi-source data set, its ground truth and panorama.yaml."""
    from panorama.demo.generate import generate

    with _progress() as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        summary = generate(directory, customers=customers, seed=seed, progress=update)
    table = Table("file", "rows", title=f"demo data in {directory}")
    for name, count in summary.get("files", {}).items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"{summary.get('persons', customers):,} people in {summary.get('seconds', 0):.1f} s")


@demo_app.command("run")
def demo_run(
    directory: Annotated[Path, typer.Option("--dir", help="Demo project directory.")] = Path("demo-project"),
    customers: Annotated[int, typer.Option(min=10)] = 10_000,
    seed: int = 7,
    serve: Annotated[bool, typer.Option(help="Serve the UI when the pipeline is done.")] = True,
) -> None:
    """Generate the demo (if missing), run the whole pipeline, and serve the UI."""
    from panorama import pipeline

    if not (directory / "panorama.yaml").exists():
        demo_generate(directory, customers, seed)
    pipeline_steps = pipeline.steps()
    for step in pipeline_steps:
        console.rule(f"[bold]{step.title}")
        step.run(directory)
    if serve:
        serve_cmd = pipeline.serve_command()
        if serve_cmd is None:
            console.print("[yellow]the web server is not part of this version yet; the pipeline is done.[/]")
            return
        _demo_access(directory)
        mailbox = _demo_mailbox(directory)
        try:
            serve_cmd(directory)
        finally:
            if mailbox is not None:
                mailbox.stop()


def _demo_mailbox(directory: Path):
    """Start the local SMTP mailbox the demo's email destinations send to (DIR/mailbox/*.eml)."""
    from panorama.demo.mailbox import start_mailbox
    from panorama.demo.project import MAILBOX_PORT

    try:
        mailbox = start_mailbox(directory / "mailbox", MAILBOX_PORT)
    except ImportError:  # aiosmtpd is not installed: the emails wait in the outbox and retry
        console.print("[yellow]aiosmtpd is not installed: demo emails stay in the outbox[/]")
        return None
    except OSError as exc:
        console.print(f"[yellow]demo mailbox not started (127.0.0.1:{MAILBOX_PORT}: {exc})[/]")
        return None
    console.print(f"demo emails (abandoned cart, sales alerts) are saved in {directory / 'mailbox'}/")
    return mailbox


def _demo_access(directory: Path) -> None:
    """Give the demo a write key for its `web` source (so SDKs can send events at once) and
    one UI user per role, with random passwords written to DIR/demo-users.txt (mode 600)."""
    import secrets

    from panorama.auth.policy import ROLES_ORDER
    from panorama.auth.users import create_user, get_user
    from panorama.ingest.keys import create_key, list_keys

    credentials = directory / "demo-users.txt"
    with project_store(directory) as (_, store):
        if not any(k.source == "web" and k.active for k in list_keys(store)):
            _, secret = create_key(store, "web")
            console.print(f"write key for source 'web' (HTTP Basic user, empty password): [bold]{secret}[/]")
        lines = []
        for role in ROLES_ORDER:
            if get_user(store, role) is None:
                password = secrets.token_urlsafe(12)
                create_user(store, role, role, password, display_name=f"Demo {role}")
                lines.append(f"{role}\t{password}\n")
    if lines:
        with open(credentials, "a", encoding="utf-8") as handle:
            handle.writelines(lines)
        credentials.chmod(0o600)
    console.print(f"sign in at http://127.0.0.1:8000 as admin, marketing, sales, support or analyst; "
                  f"passwords in {credentials}")  # fmt: skip


# Each module adds its commands in its own `commands.py` with `register(app)`, so modules
# never edit this file to add a command. Listed in pipeline order.
COMMAND_MODULES = (
    "panorama.server.commands",
    "panorama.identity.commands",
    "panorama.traits.commands",
    "panorama.predict.commands",
    "panorama.segments.commands",
    "panorama.activate.commands",
    "panorama.journeys.commands",
    "panorama.experiments.commands",
    "panorama.auth.commands",
    "panorama.privacy.commands",
    "panorama.scale.commands",
)


def _register_commands() -> None:
    from panorama.modules import optional_import

    for module_name in COMMAND_MODULES:
        if (module := optional_import(module_name)) is not None:
            module.register(app)


_register_commands()


def main() -> None:  # pragma: no cover - entry point
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
