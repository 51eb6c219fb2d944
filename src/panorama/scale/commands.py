"""CLI: `panorama scale run|sync`, and the pipeline steps that follow `engine:` in panorama.yaml.

With `engine: spark`, `panorama demo run` / `panorama scale run` resolve identities with the
graph's components on Spark, compute traits, RFM, lifecycle, metrics and point-in-time
features on Spark over the Parquet log, and evaluate the batch segments on Spark. The
store keeps what the API, UI and real-time path read (profiles, traits, segment history).
"""

from __future__ import annotations

import atexit
import time
from pathlib import Path
from typing import Annotated

import typer

scale_app = typer.Typer(help="The batch pipeline on Spark and the log as Parquet (engine: spark).",
                        no_args_is_help=True)  # fmt: skip

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True
    ),
]

_sessions: dict[str, object] = {}


def spark_for(project) -> object:
    """The project's Spark session (one per process, stopped at exit)."""
    import importlib.util

    from panorama.cli import fail

    if importlib.util.find_spec("pyspark") is None:
        fail(
            "engine: spark needs PySpark (pip install 'panorama-cdp[spark]', or 'pyspark>=4') and Java 17+"
        )
    key = str(project.root)
    if key not in _sessions:
        from panorama.scale.engine import session

        _sessions[key] = session(project.config)
        atexit.register(_sessions[key].stop)
    return _sessions[key]


def _engine(project_dir: Path) -> str:
    from panorama.config import load_project

    return load_project(project_dir).config.engine


def unify(project: Path = Path(".")) -> None:
    """The pipeline's identity step on the configured engine."""
    if _engine(project) != "spark":
        from panorama.identity.commands import unify as on_duckdb

        return on_duckdb(project=project)
    from panorama.cli import console, project_store
    from panorama.scale.identity import unify_on_spark
    from panorama.scale.pipeline import log_path

    with project_store(project) as (proj, store):
        spark = spark_for(proj)
        work = Path(log_path(proj)) / "_identity" / "work" if "://" not in str(log_path(proj)) else proj.root / ".panorama-spark" / "work"  # fmt: skip
        stats = unify_on_spark(store, proj, spark, work)
        console.print(f"unify (Splink and components on Spark): {stats.members:,} records and events, "
                      f"{stats.profiles:,} profiles, {stats.splink_pairs:,} probabilistic matches; "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in stats.seconds.items()))  # fmt: skip


def compute(project: Path = Path(".")) -> None:
    """The pipeline's traits step on the configured engine (Spark: traits, RFM, lifecycle,
    metrics and features over the Parquet log; the tables loaded back into the store)."""
    if _engine(project) != "spark":
        from panorama.traits.commands import compute as on_duckdb

        return on_duckdb(project=project)
    from panorama.cli import console, project_store
    from panorama.scale.pipeline import run

    with project_store(project) as (proj, store):
        result = run(store, proj, spark_for(proj), segments=False)
        console.print(f"on Spark: traits for {result.profiles:,} profiles from {result.events:,} events as of "
                      f"{result.as_of:%Y-%m-%d %H:%M}; "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))  # fmt: skip


def segments(project: Path = Path(".")) -> None:
    """The pipeline's segments step: evaluated on Spark (`engine: spark`, members as Parquet),
    then the store's membership history (entries, exits, triggers) by the segments engine."""
    from panorama.segments.commands import refresh

    if _engine(project) == "spark":
        from panorama.cli import console, project_store
        from panorama.scale.pipeline import segments_on_spark

        with project_store(project) as (proj, store):
            started = time.perf_counter()
            members, errors = segments_on_spark(store, proj, spark_for(proj))
            console.print(f"segments on Spark in {time.perf_counter() - started:.1f} s: "
                          + ", ".join(f"{k} {len(v):,}" for k, v in members.items()))  # fmt: skip
            for name, error in errors.items():
                console.print(f"[yellow]{name}: {error}[/]")
    refresh(project=project)


@scale_app.command("run")
def scale_run(project: ProjectOpt = Path(".")) -> None:
    """The batch pipeline on the configured engine: ingest, unify, consent, traits, predict, segments."""
    from panorama.pipeline import steps

    for step in steps():
        step.run(project)


@scale_app.command("sync")
def scale_sync(project: ProjectOpt = Path(".")) -> None:
    """Append what the store's log received since the last sync to the Parquet log."""
    from panorama.cli import console, project_store
    from panorama.scale.log import sync
    from panorama.scale.pipeline import log_path

    with project_store(project) as (proj, store):
        rows = sync(store, log_path(proj), batch_rows=proj.config.spark.micro_batch_rows * 50)
        console.print(
            f"Parquet log {log_path(proj)}: +{rows['events']:,} events, +{rows['records']:,} records"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(scale_app, name="scale")
