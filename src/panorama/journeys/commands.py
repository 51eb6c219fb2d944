"""CLI: `panorama journeys [--segment S] [--from D] [--to D] [--funnel a,b,c] [--json]`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]


def _time(text: str | None, option: str) -> dt.datetime | None:
    from panorama.cli import fail

    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r}: not a time; use YYYY-MM-DD or an ISO timestamp")


def _h(x) -> str:
    if x is None:
        return "-"
    return f"{x * 60:.0f} min" if x < 1 else (f"{x:.1f} h" if x < 48 else f"{x / 24:.1f} d")


journeys_app = typer.Typer(help="The journey map: stages, flows, funnel, time between stages, touchpoints, "
                                "paths, stalls; `export` writes the event log for process mining.",
                           invoke_without_command=True)  # fmt: skip


@journeys_app.callback()
def journeys(
    ctx: typer.Context,
    project: ProjectOpt = Path("."),
    segment: Annotated[str | None, typer.Option("--segment", "-s", help="Only this segment's members.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Events at or after (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Events before (YYYY-MM-DD).")] = None,
    funnel: Annotated[str | None, typer.Option(help="Funnel steps, comma-separated stages or events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole map as JSON.")] = False,
) -> None:
    """The journey map: stages, flows, funnel, time between stages, touchpoints, paths, stalls."""
    if ctx.invoked_subcommand is not None:
        return
    from panorama.cli import console, fail, project_store
    from panorama.journeys.map import journey_map

    steps = [s.strip() for s in funnel.split(",") if s.strip()] if funnel else None
    with project_store(project, read_only=True) as (proj, store):
        if segment and segment not in proj.config.segments:
            fail(f"unknown segment {segment!r}; configured: {', '.join(proj.config.segments) or '(none)'}")
        m = journey_map(store, proj.config.journeys, segment=segment, start=_time(start, "--from"),
                        end=_time(end, "--to"), funnel=steps)
    if as_json:
        import orjson

        typer.echo(orjson.dumps(m, option=orjson.OPT_INDENT_2, default=str).decode())
        return
    console.print(f"[bold]journeys[/] {m['profiles']:,} profiles, {m['events']:,} stage events"
                  + (f", segment {segment}" if segment else ""))
    t = Table("funnel step", "profiles", "from previous", "drop-off", "median time", "p90 time")
    for r in m["funnel"]:
        conv = r["conversion_from_previous"]
        t.add_row(r["step"], f"{r['profiles']:,}", "-" if conv is None else f"{conv:.1%}", f"{r['drop_off']:,}",
                  _h(r["median_hours_from_previous"]), _h(r["p90_hours_from_previous"]))
    console.print(t)
    t = Table("from", "to", "flows", "profiles", "median time", "p90 time")
    for r in m["transitions"][:15]:
        t.add_row(r["source"], r["target"], f"{r['count']:,}", f"{r['profiles']:,}", _h(r["median_hours"]),
                  _h(r["p90_hours"]))
    console.print(t)
    t = Table("stage", "top touchpoints (events)")
    for stage, rows in m["touchpoints"].items():
        t.add_row(stage, ", ".join(f"{r['touchpoint']} {r['events']:,}" for r in rows[:5]) or "-")
    console.print(t)
    t = Table("most common paths", "profiles", "%")
    for r in m["paths"]:
        t.add_row(r["path"], f"{r['profiles']:,}", f"{r['pct']:.1f}")
    console.print(t)
    t = Table(f"stalled (inactive {m['stalls']['inactive_for_days']:g} d) in", "profiles", "% of reached",
              "median days inactive")
    for r in m["stalls"]["by_stage"]:
        t.add_row(r["stage"], f"{r['stalled']:,}", f"{r['pct_of_reached']:.1f}", f"{r['median_days_inactive']:.0f}")
    console.print(t)
    t = Table("event", "directly followed by", "count", "median time")
    for r in m["dfg"]["edges"][:15]:
        t.add_row(r["source"], r["target"], f"{r['count']:,}", _h(r["median_hours"]))
    console.print(t)


@journeys_app.command("export")
def export(
    output: Annotated[Path, typer.Argument(help="File to write (CSV or Parquet).")],
    project: ProjectOpt = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    level: Annotated[str, typer.Option(help="Activities: event names, or stages.")] = "event",
    segment: Annotated[str | None, typer.Option("--segment", "-s", help="Only this segment's members.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Events at or after (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Events before (YYYY-MM-DD).")] = None,
) -> None:
    """The event log for process mining, in pm4py's columns: case:concept:name (profile),
    concept:name (event or stage), time:timestamp (ISO 8601, UTC), stage, touchpoint, message_id."""
    from panorama.cli import console, fail, project_store
    from panorama.journeys.map import export_event_log

    if fmt not in ("csv", "parquet"):
        fail(f"--format {fmt!r}: use csv or parquet")
    if level not in ("event", "stage"):
        fail(f"--level {level!r}: use event or stage")
    with project_store(project, read_only=True) as (proj, store):
        if segment and segment not in proj.config.segments:
            fail(f"unknown segment {segment!r}; configured: {', '.join(proj.config.segments) or '(none)'}")
        rows = export_event_log(store, proj.config.journeys, str(output), fmt, segment=segment,
                                start=_time(start, "--from"), end=_time(end, "--to"), level=level)
    console.print(f"wrote {rows:,} events to {output} ({fmt}, pm4py's column names)")


def register(app: typer.Typer) -> None:
    app.add_typer(journeys_app, name="journeys")
