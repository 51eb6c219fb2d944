"""CLI: `panorama unify`, `panorama profile show|split|history`, `panorama evaluate identity`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from panorama.cli import ProjectOpt, console, evaluate_app, fail, project_store

profile_app = typer.Typer(help="Look at, and repair, unified profiles.", no_args_is_help=True)


def unify(project: Path = Path(".")) -> None:
    """Resolve identities: one profile per person, from every record and event of the log."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from panorama.identity.service import unify as run

    with project_store(project) as (proj, store):
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:  # fmt: skip
            task = progress.add_task("unify", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage)

            stats = run(store, proj, update)
        table = Table("", "count", title="unify")
        for label, value in (
            ("records and events", stats.members),
            ("identifier signatures", stats.sigs),
            ("identifiers", stats.nodes),
            ("  shared (not linking)", stats.shared),
            ("links", stats.links),
            ("  refused by merge protection", stats.refused),
            ("probabilistic matches", stats.splink_pairs),
            ("profiles", stats.profiles),
            ("merges of existing profiles", stats.merges),
        ):
            table.add_row(label, f"{value:,}")
        console.print(table)
        total = sum(stats.seconds.values())
        console.print(f"done in {total:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in stats.seconds.items()) + ")")


def evaluate_identity(
    truth: Annotated[Path, typer.Option("--truth", help="CSV or Parquet: source, record_id, person_id.")],
    predicted: Annotated[Path | None, typer.Option(
        "--predicted", help="Score this `export identities` file instead of the store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Pairwise precision, recall and F1 of the resolved identities against a truth file."""
    from panorama.identity.evaluate import evaluate_files, evaluate_store

    if not truth.exists():
        fail(f"{truth}: not found")
    try:
        if predicted is not None:
            if not predicted.exists():
                fail(f"{predicted}: not found")
            scores = evaluate_files(predicted, truth)
        else:
            with project_store(project, read_only=True) as (_, store):
                scores = evaluate_store(store, truth)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        import orjson

        typer.echo(orjson.dumps(scores.as_dict()).decode())
        return
    _print_scores(scores)


def _print_scores(s) -> None:
    from rich.table import Table

    table = Table("measure", "value", title="identity resolution: pairwise scores")
    table.add_row("precision", f"{s.precision:.4f}")
    table.add_row("recall", f"{s.recall:.4f}")
    table.add_row("F1", f"{s.f1:.4f}")
    table.add_row("rows scored", f"{s.rows:,}")
    table.add_row("predicted profiles / true persons", f"{s.predicted_profiles:,} / {s.true_persons:,}")
    table.add_row("pairs: correct / predicted / true", f"{s.correct_pairs:,} / {s.predicted_pairs:,} / {s.true_pairs:,}")
    if s.rows_missing_in_prediction or s.rows_missing_in_truth:
        table.add_row("rows only in truth / only in prediction",
                      f"{s.rows_missing_in_prediction:,} / {s.rows_missing_in_truth:,}")  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("unify")(unify)
    app.add_typer(profile_app, name="profile")
    evaluate_app.command("identity")(evaluate_identity)
