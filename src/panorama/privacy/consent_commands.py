"""`panorama consent ...`: consent per purpose, its history, admin changes and suppression lists."""

from __future__ import annotations

import csv
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

consent_app = typer.Typer(help="Consent per person and purpose (email, SMS, push, analytics, "
                               "personalisation) and suppression lists.", no_args_is_help=True)  # fmt: skip


def sync(project: Path) -> None:
    """Rebuild the consent changes from the log (the pipeline's step)."""
    consent_sync(project=project)


@consent_app.command("sync")
def consent_sync(project: ProjectOpt = Path(".")) -> None:
    """Rebuild every consent change from the log (source columns, traits, events, admin changes)."""
    from panorama.cli import console, project_store
    from panorama.privacy.consent import sync as run

    with project_store(project) as (proj, store):
        count = run(store, proj)
    console.print(f"{count:,} consent changes recorded")


@consent_app.command("show")
def consent_show(key: KeyArg, project: ProjectOpt = Path(".")) -> None:
    """A person's consent per purpose (and why), then every recorded change."""
    from panorama.cli import console, fail, project_store
    from panorama.privacy.consent import history, state
    from panorama.privacy.subject import SubjectError, collect

    with project_store(project) as (proj, store):
        try:
            subject = collect(store, key, proj)
        except SubjectError as exc:
            fail(str(exc))
        pid = subject.profile_ids[0] if subject.profile_ids else None
        current = state(store, proj, pid, subject.pairs)
        changes = history(store, subject)
    table = Table(
        "purpose", "allowed", "consent", "since (UTC)", "from", "source", title=f"consent of {key}"
    )
    for purpose, s in current.items():
        consent = {True: "granted", False: "denied", None: "not recorded"}[s["granted"]]
        if s["suppressed"]:
            consent += f"; suppressed ({s['suppression_reason'] or 'no reason given'})"
        table.add_row(purpose, "yes" if s["allowed"] else "[red]no[/]", consent,
                      f"{s['changed_at']:%Y-%m-%d %H:%M}" if s["changed_at"] else "", s["via"] or "",
                      s["source"] or "")  # fmt: skip
    console.print(table)
    log = Table("at (UTC)", "purpose", "change", "from", "source", title="history")
    for c in changes:
        log.add_row(f"{c['changed_at']:%Y-%m-%d %H:%M:%S}", c["purpose"], "granted" if c["granted"] else "denied",
                    c["via"], c["source"])  # fmt: skip
    console.print(log)


@consent_app.command("set")
def consent_set(
    key: KeyArg,
    purpose: Annotated[
        str, typer.Argument(help="email, sms, push, analytics, personalisation, ...")
    ],
    decision: Annotated[str, typer.Argument(help="granted or denied")],
    project: ProjectOpt = Path("."),
) -> None:
    """Record a person's decision (e.g. given on the phone) as an event in the log."""
    from panorama.cli import console, fail, project_store
    from panorama.privacy.consent import ConsentError, admin_change

    if decision not in ("granted", "denied"):
        fail(f"decision: {decision!r}; use granted or denied")
    with project_store(project) as (proj, store):
        try:
            now = admin_change(store, proj, key, purpose, decision == "granted")
        except ConsentError as exc:
            fail(str(exc))
    console.print(f"{purpose}: {decision} (allowed: {'yes' if now['allowed'] else 'no'})")


PurposeOpt = Annotated[str, typer.Option("--purpose", help="A purpose, or * for every purpose.")]


def _pair(value: str, type_: str | None) -> tuple[str, str]:
    if type_ is None:
        kind, sep, rest = value.partition(":")
        if sep and kind and "@" not in kind:
            return kind, rest
        return ("email" if "@" in value else "phone"), value
    return type_, value


@consent_app.command("suppress")
def consent_suppress(
    value: Annotated[str, typer.Argument(help="type:value, or an email address or phone number")],
    purpose: PurposeOpt = "*",
    reason: Annotated[str | None, typer.Option(help="Why (bounce, complaint, legal, ...).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Never contact this identifier on this purpose, whatever its consent (stored hashed)."""
    from panorama.cli import console, fail, project_store
    from panorama.privacy.consent import ConsentError, suppress

    type_, raw = _pair(value, None)
    with project_store(project) as (proj, store):
        try:
            suppress(store, type_, raw, purpose, reason, proj.config.consent)
        except ConsentError as exc:
            fail(str(exc))
    console.print(f"suppressed {type_} for {purpose}")


@consent_app.command("unsuppress")
def consent_unsuppress(
    value: Annotated[str, typer.Argument(help="type:value, or an email address or phone number")],
    purpose: Annotated[
        str | None, typer.Option("--purpose", help="Only this purpose (default: all).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Remove an identifier from the suppression list."""
    from panorama.cli import console, project_store
    from panorama.privacy.consent import unsuppress

    type_, raw = _pair(value, None)
    with project_store(project) as (_, store):
        n = unsuppress(store, type_, raw, purpose)
    console.print(f"removed {n} suppression(s)")


@consent_app.command("import")
def consent_import(
    file: Annotated[Path, typer.Argument(help="A CSV file with a header; one identifier per row.")],
    column: Annotated[str, typer.Option(help="The column holding the identifier.")] = "email",
    type_: Annotated[
        str, typer.Option("--type", help="The identifier type of that column.")
    ] = "email",
    purpose: PurposeOpt = "*",
    reason: Annotated[str | None, typer.Option(help="Why (e.g. the list's name).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Import a suppression list (e.g. an ESP's bounces or unsubscribes)."""
    from panorama.cli import console, fail, project_store
    from panorama.privacy.consent import ConsentError, suppress

    if not file.exists():
        fail(f"{file}: file not found")
    added = skipped = 0
    with (
        project_store(project) as (proj, store),
        open(file, newline="", encoding="utf-8") as handle,
    ):
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            fail(
                f"{file}: no column {column!r}; its columns are: {', '.join(reader.fieldnames or [])}"
            )
        for line, row in enumerate(reader, 2):
            value = (row.get(column) or "").strip()
            if not value:
                skipped += 1
                continue
            try:
                added += suppress(store, type_, value, purpose, reason, proj.config.consent)
            except ConsentError as exc:
                fail(f"{file}, line {line}: {exc}")
    console.print(f"{added:,} suppressions added ({skipped:,} empty rows skipped)")


@consent_app.command("suppressions")
def consent_suppressions(project: ProjectOpt = Path(".")) -> None:
    """The suppression list: counts per type, purpose and reason (values are stored hashed)."""
    from panorama.cli import console, project_store

    with project_store(project) as (_, store):
        rows = store.execute("SELECT type, purpose, coalesce(reason, ''), count(*), max(created_at) "
                             "FROM consent_suppressions GROUP BY ALL ORDER BY 1, 2, 3").fetchall()  # fmt: skip
    table = Table("type", "purpose", "reason", "identifiers", "last added (UTC)")
    for t, p, r, n, at in rows:
        table.add_row(t, p, r, f"{n:,}", f"{at:%Y-%m-%d %H:%M}")
    console.print(table)
