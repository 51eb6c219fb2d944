"""CLI: `panorama experiments ...` and `panorama hypotheses ...`.

    panorama experiments list                     declared experiments and those in the log
    panorama experiments analyze NAME [--json]    per-variant results, lifts, p-value, P(beat), SRM
    panorama experiments power --baseline 0.17 --mde 0.1 [--daily N]   sample size for a new test
    panorama experiments power NAME --mde 0.1     power of the exposures so far
    panorama hypotheses add "TITLE" -i 8 -c 6 -e 4
    panorama hypotheses list                      ranked by ICE
    panorama hypotheses link ID EXPERIMENT        the experiment that tests it
    panorama hypotheses evaluate ID               record the linked experiment's outcome
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]

experiments_app = typer.Typer(help="A/B tests: analysis, sample ratio checks, power.", no_args_is_help=True)
hypotheses_app = typer.Typer(help="The hypothesis backlog, ranked by ICE score.", no_args_is_help=True)


def _pct(x, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.2%}" if signed else f"{x:.2%}")


def _num(x, fmt: str = ",.2f") -> str:
    return "-" if x is None else format(x, fmt)


@experiments_app.command("list")
def list_cmd(project: ProjectOpt = Path(".")) -> None:
    """Declared experiments and those seen in the log, with their exposures."""
    from panorama.cli import console, project_store
    from panorama.experiments.analysis import list_experiments

    with project_store(project, read_only=True) as (proj, store):
        rows = list_experiments(store, proj.config)
    table = Table("experiment", "declared", "metric", "variants", "exposed", "first", "last")
    for r in rows:
        table.add_row(r["experiment_id"], "yes" if r["declared"] else "no", r["metric"],
                      ", ".join(r.get("variants", [])), f"{r['exposed_profiles']:,}",
                      str(r.get("first_exposure") or "-")[:16], str(r.get("last_exposure") or "-")[:16])
    console.print(table)


@experiments_app.command("analyze")
def analyze_cmd(name: Annotated[str, typer.Argument(help="Experiment name or experiment_id.")],
                project: ProjectOpt = Path("."),
                as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False) -> None:
    """Per-variant counts and rates, lift with confidence intervals, p-value, P(beat control), SRM."""
    from panorama.cli import console, fail, project_store
    from panorama.experiments.analysis import ExperimentError, analyze

    with project_store(project, read_only=True) as (proj, store):
        try:
            r = analyze(store, proj.config, name)
        except ExperimentError as exc:
            fail(str(exc))
    if as_json:
        import orjson

        typer.echo(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str).decode())
        return
    conv = r["metric"] in ("conversion", "retention")
    console.print(f"[bold]{r['experiment']}[/]  metric: {r['metric']} ({r['metric_event']} within "
                  f"{r['window_seconds'] / 3600:g} h of exposure)  design: {r['design']}  alpha {r['alpha']}")
    table = Table("variant", "exposed", "converted" if conv else "revenue", "rate" if conv else "per user")
    for v in r["variants"]:
        table.add_row(v["variant"] + (" (control)" if v["control"] and v["variant"] != "control" else ""), f"{v['exposed']:,}",
                      f"{v['converted']:,}" if conv else _num(v["revenue"]),
                      _pct(v["rate"]) if conv else _num(v["mean"]))
    console.print(table)
    s = r["srm"]
    console.print(f"sample ratio: chi2 {s['chi2']:.2f}, p {s['p_value']:.3g}"
                  + ("  [bold red]MISMATCH[/]" if s["mismatch"] else "  ok"))
    if r["refused"]:
        console.print(f"[yellow]{r['refused']}[/]")
    if r["comparisons"]:
        table = Table("variant", "abs lift (95% CI)", "rel lift (95% CI)", "p-value", "P(beat control)", "test")
        for c in r["comparisons"]:
            if "error" in c:
                table.add_row(c["variant"], c["error"], "", "", "", "")
                continue
            fmt = (lambda x: _pct(x, True)) if conv else (lambda x: _num(x, "+,.2f"))
            p = c["sequential"]["p_value"] if "sequential" in c else c["p_value"]
            table.add_row(c["variant"], f"{fmt(c['abs_lift'])} ({fmt(c['abs_ci'][0])} to {fmt(c['abs_ci'][1])})",
                          f"{_pct(c['rel_lift'], True)} ({_pct(c['rel_ci'][0], True)} to {_pct(c['rel_ci'][1], True)})",
                          f"{p:.3g}", _pct(c["prob_beat_control"]), c["test"])
        console.print(table)
    for note in r["notes"]:
        console.print(f"note: {note}")
    console.print(f"verdict: [bold]{r['verdict']}[/]")


@experiments_app.command("power")
def power_cmd(name: Annotated[str | None, typer.Argument(help="An experiment: power of its exposures so far.")] = None,
              baseline: Annotated[float | None, typer.Option(help="Control conversion rate (or mean).")] = None,
              mde: Annotated[float, typer.Option(help="Minimum detectable relative lift (0.1 = +10%).")] = 0.1,
              alpha: Annotated[float, typer.Option()] = 0.05,
              power: Annotated[float, typer.Option()] = 0.8,
              sd: Annotated[float | None, typer.Option(help="Std deviation (revenue metric).")] = None,
              daily: Annotated[float | None, typer.Option(help="Exposures per day (all variants).")] = None,
              project: ProjectOpt = Path(".")) -> None:
    """Sample size per variant for a fixed-horizon test, or the power an experiment has now."""
    from panorama.cli import console, fail, project_store
    from panorama.experiments.analysis import ExperimentError, observed_power, plan

    try:
        if name:
            with project_store(project, read_only=True) as (proj, store):
                r = observed_power(store, proj.config, name, mde)
            console.print(f"{r['experiment']}: control rate {r['baseline']:.4g}; {r['per_variant_now']:,} per variant "
                          f"gives power {r['power_now']:.1%} to detect {mde:+.1%}; power {r['power_target']:.0%} "
                          f"needs {r['per_variant_needed']:,} per variant")
            return
        if baseline is None:
            fail("give --baseline (the control's rate), or an experiment name")
        r = plan(baseline, mde, alpha, power, "revenue" if sd else "conversion", sd, daily)
    except (ExperimentError, ValueError) as exc:
        fail(str(exc))
    days = f", {r['days']:.0f} days at {daily:,.0f} exposures/day" if r.get("days") else ""
    console.print(f"{r['per_variant']:,} per variant ({r['total']:,} in all{days}) to detect {mde:+.1%} on "
                  f"{baseline:g} with power {power:.0%} at alpha {alpha} (two-sided, fixed horizon)")


@hypotheses_app.command("add")
def hyp_add(title: str,
            impact: Annotated[int, typer.Option("--impact", "-i", help="1-10")],
            confidence: Annotated[int, typer.Option("--confidence", "-c", help="1-10")],
            ease: Annotated[int, typer.Option("--ease", "-e", help="1-10")],
            description: Annotated[str | None, typer.Option("--description", "-d")] = None,
            project: ProjectOpt = Path(".")) -> None:
    """Add a hypothesis with its ICE scores."""
    from panorama.cli import console, fail, project_store
    from panorama.experiments.hypotheses import HypothesisError, add

    with project_store(project) as (_, store):
        try:
            h = add(store, title, impact, confidence, ease, description)
        except HypothesisError as exc:
            fail(str(exc))
    console.print(f"hypothesis {h['id']} added (ICE {h['ice']:g})")


@hypotheses_app.command("list")
def hyp_list(status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
             project: ProjectOpt = Path(".")) -> None:
    """The backlog ranked by ICE score, with linked experiments and outcomes."""
    from panorama.cli import console, project_store
    from panorama.experiments.hypotheses import ranked

    with project_store(project, read_only=True) as (_, store):
        rows = ranked(store, status)
    table = Table("rank", "id", "hypothesis", "I", "C", "E", "ICE", "status", "experiment", "outcome")
    for h in rows:
        table.add_row(str(h["rank"]), str(h["id"]), h["title"], str(h["impact"]), str(h["confidence"]),
                      str(h["ease"]), f"{h['ice']:g}", h["status"], h["experiment"] or "-", h["outcome"] or "-")
    console.print(table)


@hypotheses_app.command("link")
def hyp_link(hypothesis_id: int, experiment: str, project: ProjectOpt = Path(".")) -> None:
    """Link a hypothesis to the experiment that tests it (status: running)."""
    from panorama.cli import console, fail, project_store
    from panorama.experiments.hypotheses import HypothesisError, link

    with project_store(project) as (_, store):
        try:
            link(store, hypothesis_id, experiment)
        except HypothesisError as exc:
            fail(str(exc))
    console.print(f"hypothesis {hypothesis_id} is tested by {experiment}")


@hypotheses_app.command("evaluate")
def hyp_evaluate(hypothesis_id: int, project: ProjectOpt = Path(".")) -> None:
    """Analyse the linked experiment and record its outcome (won, lost, inconclusive, running)."""
    from panorama.cli import console, fail, project_store
    from panorama.experiments.analysis import ExperimentError
    from panorama.experiments.hypotheses import HypothesisError, evaluate

    with project_store(project) as (proj, store):
        try:
            h = evaluate(store, proj.config, hypothesis_id)
        except (HypothesisError, ExperimentError) as exc:
            fail(str(exc))
    console.print(f"hypothesis {hypothesis_id}: {h['status']} — {h['outcome']}")


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")
    app.add_typer(hypotheses_app, name="hypotheses")
