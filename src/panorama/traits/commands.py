"""CLI: `panorama traits compute|show` and `panorama metrics`; `compute(project)` for the pipeline.

Registering the commands also installs the real-time hook, so `panorama serve` updates traits
for events that arrive through the HTTP API.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from panorama.store import one

traits_app = typer.Typer(help="Computed traits, RFM and lifecycle stages per profile.", no_args_is_help=True)

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]


def _parse_time(text: str, option: str, end: bool = False) -> dt.datetime:
    """YYYY-MM-DD (a whole day: an end date is inclusive) or an ISO timestamp (exact)."""
    from panorama.cli import fail

    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            t = dt.datetime.combine(day, dt.time())
            return t + dt.timedelta(days=1) if end else t
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: not a date; use YYYY-MM-DD (or an ISO timestamp)")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


@traits_app.command("compute")
def traits_compute(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Point in time (YYYY-MM-DD): only events before it count. "
                        "Default: the start of the day after the latest event.")] = None,
    engine: Annotated[str, typer.Option(help="duckdb (the store itself) or spark (PySpark, local mode).")] = "duckdb",
    spark_threads: Annotated[int, typer.Option(min=1, help="Spark local threads (--engine spark).")] = 2,
    project: ProjectOpt = Path("."),
) -> None:
    """Recompute every profile's traits, RFM scores and lifecycle stage from the log."""
    from panorama.cli import console, fail, project_store
    from panorama.traits.batch import TraitsError, compute
    from panorama.traits.definitions import TraitError

    if engine not in ("duckdb", "spark"):
        fail(f"--engine {engine!r}: use duckdb or spark")
    when = _parse_time(as_of, "--as-of") if as_of else None
    with project_store(project) as (proj, store):
        try:
            with console.status(f"computing traits on {engine}"):
                if engine == "spark":
                    import importlib.util

                    if importlib.util.find_spec("pyspark") is None:
                        fail("--engine spark needs PySpark: pip install pyspark (and Java 17+)")
                    from panorama.traits.spark import compute_on_spark

                    run = compute_on_spark(store, proj.config, when, threads=spark_threads)
                else:
                    run = compute(store, proj.config, when)
        except (TraitError, TraitsError) as exc:
            fail(str(exc))
        console.print(
            f"traits for {run.profiles:,} profiles from {run.events:,} events as of "
            f"{run.as_of:%Y-%m-%d %H:%M} in {run.seconds:.1f} s on {engine} (run {run.run_id})"
        )
        params = run.parameters
        if params.lifecycle:
            lc = params.lifecycle
            console.print(
                f"lifecycle thresholds: new ≤ {lc['new_days']} d, active ≤ {lc['active_days']} d, "
                f"lapsed > {lc['lapsed_days']} d since the latest order ({lc['basis']['active_days']}"
                + (f", from {lc['gaps']:,} inter-purchase gaps" if lc["basis"]["active_days"] == "derived" else "")
                + ")"
            )
        _distribution(store)


def _distribution(store) -> None:
    from panorama.cli import console

    cols = {r[0] for r in store.execute("DESCRIBE profile_traits").fetchall()}
    for col, title in (("lifecycle_stage", "lifecycle stage"), ("rfm_segment", "RFM segment")):
        if col not in cols:
            continue
        table = Table(title, "profiles", "share", "avg orders", "avg revenue")
        rows = store.execute(f"""
            SELECT coalesce({col}, '(no orders)'), count(*), count(*) / sum(count(*)) OVER (),
                   avg(orders), avg(revenue)
            FROM profile_traits GROUP BY 1 ORDER BY 2 DESC
        """).fetchall()
        for name, n, share, orders, revenue in rows:
            table.add_row(name, f"{n:,}", f"{100 * share:.1f}%", _fmt(orders), _fmt(revenue))
        console.print(table)


@traits_app.command("show")
def traits_show(
    profile_id: Annotated[str | None, typer.Argument(help="A profile id (default: list the trait definitions).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """One profile's traits, or the trait definitions."""
    import orjson

    from panorama.cli import console, fail, project_store
    from panorama.traits.definitions import TraitError, trait_set

    with project_store(project, read_only=True) as (proj, store):
        if profile_id is None:
            try:
                traits = trait_set(proj.config)
            except TraitError as exc:
                fail(str(exc))
            if as_json:
                from panorama.traits.definitions import traits_to_json

                typer.echo(orjson.dumps(traits_to_json(traits)).decode())
                return
            table = Table("trait", "kind", "definition")
            for t in traits:
                kind = "expression" if t.spec.expr else t.spec.agg or ""
                table.add_row(t.name, kind + ("" if t.builtin else " (yours)"), t.description)
            console.print(table)
            return
        if not store.table_exists("profile_traits"):
            fail("no traits yet: run `panorama traits compute`")
        rel = store.execute("SELECT * FROM profile_traits WHERE profile_id = ?", [profile_id])
        row = one(rel)
        if row is None:
            fail(f"profile {profile_id!r} not found in profile_traits")
        data = dict(zip([d[0] for d in rel.description], row, strict=True))
        if as_json:
            typer.echo(orjson.dumps(data, default=str).decode())
            return
        table = Table("trait", "value", title=profile_id)
        for k, v in data.items():
            if k != "profile_id":
                table.add_row(k, _fmt(v))
        console.print(table)


def metrics_command(
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD). Default: 365 days before --to.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, inclusive (YYYY-MM-DD). "
                                            "Default: the day of the latest event.")] = None,
    segment: Annotated[str | None, typer.Option(
        help="Only profiles matching this SQL WHERE expression over profile_traits, "
             "e.g. \"rfm_segment = 'Champions'\".")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (what the REST API serves).")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Customer metrics with their formulas: NPS, CSAT, churn, retention, CLV, AOV, frequency, cohorts."""
    import orjson

    from panorama.cli import console, fail, project_store
    from panorama.traits.definitions import TraitError
    from panorama.traits.metrics import MetricsError, compute

    s = _parse_time(start, "--from") if start else None
    e = _parse_time(end, "--to", end=True) if end else None
    with project_store(project, read_only=True) as (proj, store):
        try:
            result = compute(store, proj.config, s, e, segment)
        except (MetricsError, TraitError) as exc:
            fail(str(exc))
    if as_json:
        typer.echo(orjson.dumps(result).decode())
        return
    period = result["period"]
    end_day = dt.datetime.fromisoformat(period["end"]) - dt.timedelta(microseconds=1)
    title = f"metrics {period['start'][:10]} – {end_day:%Y-%m-%d}"
    if segment:
        title += f" · segment {segment} ({result['profiles']:,} profiles)"
    table = Table("metric", "value", "inputs", title=title)
    for name, m in result["metrics"].items():
        value = "-" if m["value"] is None else f"{m['value']:,}" + (" %" if m["unit"] == "%" else "")
        inputs = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in m["inputs"].items())
        table.add_row(name.replace("_", " "), value, inputs)
    console.print(table)
    for m in result["metrics"].values():
        console.print(f"• {m['formula']}", highlight=False)
    p = result["parameters"]
    console.print(f"active customer = ordered in the last {p['active_window_days']} days "
                  f"({p['active_window_basis']}); gross margin {p['gross_margin']:.0%}")  # fmt: skip
    cohorts = result["cohorts"]
    if cohorts["rows"]:
        months = cohorts["months"]
        table = Table("cohort", "customers", *[f"M{k}" for k in months],
                      title="cohort retention by first-order month (% ordering in month k)")  # fmt: skip
        for row in cohorts["rows"]:
            cells = [f"{v:.0f}" if v is not None else "" for v in row["retention"]]
            table.add_row(row["cohort"], f"{row['customers']:,}", *cells, *[""] * (len(months) - len(cells)))
        console.print(table)
        console.print(f"• {cohorts['formula']}", highlight=False)


def compute(project: Path) -> None:
    """The pipeline step: `panorama traits compute` for the project."""
    traits_compute(as_of=None, project=project)


def register(app: typer.Typer) -> None:
    from panorama.traits import realtime

    app.add_typer(traits_app, name="traits")
    app.command("metrics")(metrics_command)
    realtime.install()
