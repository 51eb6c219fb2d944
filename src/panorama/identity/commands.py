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
        console.print(
            f"done in {total:.1f} s ("
            + ", ".join(f"{k} {v:.1f}" for k, v in stats.seconds.items())
            + ")"
        )


def evaluate_identity(
    truth: Annotated[
        Path, typer.Option("--truth", help="CSV or Parquet: source, record_id, person_id.")
    ],
    predicted: Annotated[
        Path | None,
        typer.Option(
            "--predicted", help="Score this `export identities` file instead of the store."
        ),
    ] = None,
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
    table.add_row(
        "predicted profiles / true persons", f"{s.predicted_profiles:,} / {s.true_persons:,}"
    )
    table.add_row(
        "pairs: correct / predicted / true",
        f"{s.correct_pairs:,} / {s.predicted_pairs:,} / {s.true_pairs:,}",
    )
    if s.rows_missing_in_prediction or s.rows_missing_in_truth:
        table.add_row("rows only in truth / only in prediction",
                      f"{s.rows_missing_in_prediction:,} / {s.rows_missing_in_truth:,}")  # fmt: skip
    console.print(table)


@profile_app.command("show")
def profile_show(
    key: Annotated[
        str,
        typer.Argument(
            metavar="ID_OR_IDENTIFIER",
            help="A profile id (also a merged one), type:value, or an email/phone.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    events: Annotated[int, typer.Option(help="Recent events to list.")] = 10,
    project: ProjectOpt = Path("."),
) -> None:
    """A unified profile: golden attributes, identifiers, source records, events, merge history."""
    from panorama.profiles.read import get_profile

    with project_store(project, read_only=True) as (proj, store):
        profile = get_profile(store, key, proj.config, recent_events=events)
    if profile is None:
        fail(f"no profile found for {key!r} (run `panorama unify` first if you have not)")
    if as_json:
        import orjson

        typer.echo(
            orjson.dumps(profile.as_dict(), default=str, option=orjson.OPT_INDENT_2).decode()
        )
        return
    _print_profile(profile)


def _print_profile(p) -> None:
    from rich.table import Table

    head = f"[bold]{p.profile_id}[/]"
    if p.looked_up_as:
        head += f"  (found by {p.looked_up_as})"
    console.print(head)
    if p.merged_ids:
        console.print(f"merged into it: {', '.join(p.merged_ids)}")
    table = Table("attribute", "value", "source", "record", "at", "rule", title="golden record")
    for name, a in p.attributes.items():
        table.add_row(
            name,
            str(a["value"]),
            a["source"] or "",
            a["record_id"] or "",
            str(a["at"] or ""),
            a["rule"],
        )
    console.print(table)
    table = Table("type", "value", "", "first seen", title="identifiers")
    for i in p.identifiers:
        table.add_row(
            i["type"],
            i["value"],
            "shared (does not link)" if i["shared"] else "",
            str(i["first_seen"] or ""),
        )
    console.print(table)
    table = Table(
        "source", "record", "at", "identifiers", title=f"source records ({len(p.records)})"
    )
    for r in p.records[:50]:
        table.add_row(r["source"], r["record_id"], str(r["ts"] or ""),
                      ", ".join(f"{i['type']}={i['value']}" for i in r["identifiers"]))  # fmt: skip
    console.print(table)
    ev = p.events
    console.print(f"[bold]events[/]: {ev['count']:,} from {ev['first_seen']} to {ev['last_seen']}")
    for e in ev["by_event"][:12]:
        console.print(f"  {e['count']:>6,}  {e['source']}  {e['type']}  {e['event']}")
    if p.history:
        table = Table("#", "at", "action", "profile", "other", "rule", "origin", title="history")
        for h in p.history:
            undone = f" (undone by #{h['undone_by']})" if h["undone_by"] else ""
            table.add_row(str(h["id"]), str(h["at"])[:19], h["action"] + undone, h["profile_id"], h["other_id"] or "",
                          h["rule"] or "", h["origin"])  # fmt: skip
        console.print(table)
    accepted = [link for link in p.links if link["accepted"]]
    refused = [link for link in p.links if not link["accepted"]]
    console.print(
        f"[bold]links[/]: {len(accepted)} hold this profile together; {len(refused)} refused"
    )
    for link in refused[:10]:
        console.print(f"  refused ({link['refused_by']}): {link['from']['type']}={link['from']['value']} -- "
                      f"{link['to']['type']}={link['to']['value']} (record {link['record']['source']}:"
                      f"{link['record']['record_id']})")  # fmt: skip


@profile_app.command("history")
def profile_history(
    key: Annotated[str, typer.Argument(metavar="ID_OR_IDENTIFIER")],
    project: ProjectOpt = Path("."),
) -> None:
    """The merges (with rule and evidence) and splits of a profile."""
    import orjson
    from rich.table import Table

    from panorama.profiles.read import get_profile

    with project_store(project, read_only=True) as (proj, store):
        profile = get_profile(store, key, proj.config, recent_events=0)
    if profile is None:
        fail(f"no profile found for {key!r}")
    table = Table(
        "#",
        "at",
        "action",
        "profile",
        "other",
        "rule",
        "evidence",
        title=f"history of {profile.profile_id}",
    )
    for h in profile.history:
        link = (h["evidence"] or {}).get("link") if h["evidence"] else None
        shown = orjson.dumps(link).decode() if link else ""
        undone = f" (undone by #{h['undone_by']})" if h["undone_by"] else ""
        table.add_row(str(h["id"]), str(h["at"])[:19], h["action"] + undone, h["profile_id"], h["other_id"] or "",
                      h["rule"] or "", shown[:120])  # fmt: skip
    console.print(table)
    if not profile.history:
        console.print("no merges or splits recorded for this profile")


@profile_app.command("split")
def profile_split(
    key: Annotated[
        str, typer.Argument(metavar="PROFILE", help="The profile to split (id or identifier).")
    ],
    merge: Annotated[
        int | None, typer.Option("--merge", help="Undo this merge (journal entry #).")
    ] = None,
    identifier: Annotated[
        str | None,
        typer.Option(
            "--identifier", help="Split off the part holding this identifier (type:value)."
        ),
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Undo one merge (or split off an identifier); the pair is remembered as never-merge."""
    from panorama.identity.journal import SplitError, merge_entries, split_identifier, split_merge
    from panorama.profiles.read import find_profile

    if (merge is None) == (identifier is None):
        with project_store(project, read_only=True) as (proj, store):
            ref = find_profile(store, key, proj.config.identity)
            if ref is None:
                fail(f"no profile found for {key!r}")
            entries = [e for e in merge_entries(store, ref.profile_id) if e[5] is None]
        if not entries:
            fail(
                f"profile {ref.profile_id} has no merge to undo; use --identifier TYPE:VALUE to split off a part"
            )
        lines = "\n".join(
            f"  --merge {i}: {a} absorbed into {s} ({r}, {str(at)[:19]})"
            for i, at, s, a, r, _ in entries
        )
        fail(
            f"give exactly one of --merge N or --identifier TYPE:VALUE. Merges of {ref.profile_id}:\n{lines}"
        )
    with project_store(project) as (proj, store):
        try:
            if merge is not None:
                result = split_merge(store, proj, merge)
            else:
                ref = find_profile(store, key, proj.config.identity)
                if ref is None:
                    fail(f"no profile found for {key!r}")
                result = split_identifier(store, proj, ref.profile_id, identifier)
        except SplitError as exc:
            fail(str(exc))
    console.print(f"split: {result.kept} and {result.split_off or '(records standing alone)'} "
                  f"(journal #{result.journal_id}; never-merge #{result.never_merge_id})")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("unify")(unify)
    app.add_typer(profile_app, name="profile")
    evaluate_app.command("identity")(evaluate_identity)
    from panorama.identity import realtime

    realtime.install()
