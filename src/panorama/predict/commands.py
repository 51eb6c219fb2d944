"""CLI: `panorama predict`, `panorama evaluate predictions`, `panorama models`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Cutoff date YYYY-MM-DD: only data before it "
                                             "is used (default: the day after the latest event).")]


def _cli():
    from panorama import cli

    return cli


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _parse(as_of: str | None) -> dt.datetime | None:
    from panorama.predict.service import parse_as_of

    if as_of is None:
        return None
    try:
        return parse_as_of(as_of)
    except ValueError as exc:
        _cli().fail(str(exc))


def predict(
    project: Annotated[Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).")]
    = Path("."),
    as_of: AsOfOpt = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train new models even if a model for this "
                                          "as-of date and data exists.")] = False,
) -> None:
    """Train (or reuse) churn and CLV models, then cross-sell, next purchase, next best offer, preferred
    channel and discount, and NPS, and score every profile as of DATE."""
    from panorama.predict.service import InsufficientData, Predictor

    cli = _cli()
    when = _parse(as_of)
    with cli.project_store(project) as (proj, store):
        predictor = Predictor(store, proj.config.predictions, log=lambda m: cli.console.print(f"[dim]{m}[/]"))
        try:
            result = predictor.predict(when, retrain=retrain, extras=True)
        except InsufficientData as exc:
            cli.fail(str(exc))
    for kind, problem in result.problems.items():
        cli.err.print(f"[bold yellow]{kind}: not trained:[/] {problem}", highlight=False)
    if not result.scored:
        cli.console.print(f"no predictions written as of {result.as_of:%Y-%m-%d}")
        return
    table = Table("prediction", "model", "horizon", "profiles", "mean", "total", "validation", "note",
                  title=f"predictions as of {result.as_of:%Y-%m-%d}")
    for kind in result.scored:
        record = result.models.get(kind)
        m = record.metrics.get("model", {}) if record else {}
        val = ("-" if kind not in ("churn", "clv", "subscription") else f"AUC {_fmt(m.get('roc_auc'))}"
               if kind != "clv" else f"Gini {_fmt(m.get('normalized_gini'))}")
        summary = result.summary[kind]
        table.add_row(kind, record.model_id if record else "-", f"{record.horizon_days} d" if record else "-",
                      f"{result.scored[kind]:,}", _fmt(summary["mean"]),
                      _fmt(summary["total"], 0) if kind == "clv" else "-", val, result.notes.get(kind, ""))
    cli.console.print(table)
    cli.console.print("columns churn_probability, predicted_clv, next_purchase_*, next_best_offer, preferred_channel, "
                      "preferred_discount, predicted_nps ... and their drivers: `panorama export profiles`")


def evaluate_predictions(
    as_of: Annotated[str, typer.Option("--as-of", help="Backtest cutoff YYYY-MM-DD: train on data before it, "
                                       "score what happened in the horizon after it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    save: Annotated[bool, typer.Option(help="Record the backtested models in the registry.")] = True,
    project: Annotated[Path, typer.Option("--project", "-p", help="Project directory.")] = Path("."),
) -> None:
    """Backtest churn and CLV as of DATE against recency, BG/NBD (+ Gamma-Gamma) and last period's spend."""
    from panorama.predict.service import Predictor

    cli = _cli()
    when = _parse(as_of)
    with cli.project_store(project) as (proj, store):
        predictor = Predictor(store, proj.config.predictions, log=lambda m: cli.err.print(f"[dim]{m}[/]"))
        report = predictor.evaluate(when, save=save)
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print_report(report)
    if report["problems"] and not report["results"]:
        raise typer.Exit(1)


_NAMES = {"model": "model (LightGBM)", "recency": "recency alone", "activity_recency": "days since any activity", "bgnbd": "BG/NBD P(no purchase)",
          "bgnbd_gg": "BG/NBD + Gamma-Gamma", "last_period_spend": "last period's spend"}


def print_report(report: dict) -> None:
    cli = _cli()
    for kind, problem in report["problems"].items():
        cli.err.print(f"[bold yellow]{kind}: not evaluated:[/] {problem}", highlight=False)
    for kind, r in report["results"].items():
        title = (f"{kind}: backtest as of {report['as_of']}, horizon {r['horizon_days']} days "
                 f"({r['window']}), trained on windows {', '.join(r['training_windows'])}")
        if kind != "clv":
            table = Table("churn = no purchase in the horizon" if kind == "churn" else "cancels in the horizon", "customers", "churn rate", "ROC AUC", "PR AUC",
                          "Brier", "calibration error", title=title)
            for name, m in r["metrics"].items():
                table.add_row(_NAMES.get(name, name), f"{m['n']:,}", _fmt(m["base_rate"]), _fmt(m["roc_auc"]),
                              _fmt(m["pr_auc"]), _fmt(m["brier"]), _fmt(m["ece"]))
            cli.console.print(table)
            cal = Table("decile of predicted risk", "customers", "predicted", "observed",
                        title="churn calibration (model)")
            for i, b in enumerate(r["metrics"]["model"]["calibration"], 1):
                cal.add_row(str(i), f"{b['n']:,}", _fmt(b["predicted"]), _fmt(b["observed"]))
            cli.console.print(cal)
        else:
            table = Table("CLV = revenue in the horizon", "profiles", "actual total", "predicted total",
                          "Spearman", "norm. Gini", "decile MAPE", "total error", title=title)
            for name, m in r["metrics"].items():
                base, _, scope = name.partition(" ")
                table.add_row(_NAMES.get(base, base) + (f" {scope}" if scope else " (customers)"), f"{m['n']:,}",
                              _fmt(m["actual_total"], 0), _fmt(m["predicted_total"], 0), _fmt(m["spearman"]),
                              _fmt(m["normalized_gini"]), _fmt(m["decile_mape"]), _fmt(m["total_error"]))
            cli.console.print(table)
        top = ", ".join(f"{i['feature']} {100 * i['gain_share']:.0f}%" for i in r["importance"][:6])
        cli.console.print(f"  top features by gain: {top}")
        if r.get("reason"):
            cli.console.print(f"  [yellow]model rejected:[/] {r['reason']}")


def report_markdown(report: dict) -> str:
    """The backtest report as Markdown tables (for docs/predictions.md)."""
    lines: list[str] = []
    f = lambda v: _fmt(v)  # noqa: E731
    for kind, r in report["results"].items():
        lines.append(f"**{kind}**, as of {report['as_of']}, horizon {r['horizon_days']} days ({r['window']}); "
                     f"trained on windows with cutoffs {', '.join(r['training_windows'])} ({r['n_train']:,} rows)\n")
        if kind != "clv":
            lines.append(f"| {kind} | customers | churn rate | ROC AUC | PR AUC | Brier | calibration error |")
            lines.append("|---|---|---|---|---|---|---|")
            for name, m in r["metrics"].items():
                lines.append(f"| {_NAMES.get(name, name)} | {m['n']:,} | {f(m['base_rate'])} | {f(m['roc_auc'])} | "
                             f"{f(m['pr_auc'])} | {f(m['brier'])} | {f(m['ece'])} |")
        else:
            lines.append("| CLV | profiles | actual total | predicted total | Spearman | norm. Gini | decile MAPE "
                         "| total error |")
            lines.append("|---|---|---|---|---|---|---|---|")
            for name, m in r["metrics"].items():
                base, _, scope = name.partition(" ")
                label = _NAMES.get(base, base) + (f" {scope}" if scope else "")
                lines.append(f"| {label} | {m['n']:,} | {_fmt(m['actual_total'], 0)} | "
                             f"{_fmt(m['predicted_total'], 0)} | {f(m['spearman'])} | {f(m['normalized_gini'])} | "
                             f"{f(m['decile_mape'])} | {f(m['total_error'])} |")
        lines.append("")
    for kind, problem in report["problems"].items():
        lines.append(f"{kind}: not evaluated: {problem}\n")
    return "\n".join(lines)


def models(
    kind: Annotated[str | None, typer.Option(help="Only this kind (churn, clv).")] = None,
    show: Annotated[str | None, typer.Option(help="Show one model in full (metrics, windows, importance).")] = None,
    project: Annotated[Path, typer.Option("--project", "-p", help="Project directory.")] = Path("."),
) -> None:
    """The model registry: every trained model with its window, metrics and status."""
    from panorama.predict import registry

    cli = _cli()
    with cli.project_store(project) as (_, store):
        if show:
            record = registry.get(store, show)
            if record is None:
                cli.fail(f"no model {show!r}; `panorama models` lists them")
            data = {k: v for k, v in record.__dict__.items() if k != "artifact"}
            typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())
            return
        rows = registry.list_models(store, kind)
    if not rows:
        cli.console.print("no models yet: run `panorama predict`")
        return
    table = Table("model", "status", "as of", "horizon", "windows", "rows", "validation (best baseline)", "data",
                  title="models (details: panorama models --show MODEL)")
    for column in table.columns[:4]:
        column.no_wrap = True
    for r in rows:
        m, bases = r.metrics.get("model", {}), r.metrics.get("baselines", {})
        key, label = ("roc_auc", "AUC") if r.kind != "clv" else ("normalized_gini", "Gini")
        best = max(((n, b.get(key)) for n, b in bases.items() if b.get(key) is not None),
                   key=lambda t: t[1], default=(None, None))
        status = r.status if r.accepted else f"[yellow]{r.status}[/]"
        validation = f"{label} {_fmt(m.get(key))}" + (f" ({best[0]} {_fmt(best[1])})" if best[0] else "")
        table.add_row(r.model_id, status, f"{r.as_of:%Y-%m-%d}", f"{r.horizon_days} d", str(len(r.windows or [])),
                      f"{r.n_train:,}", validation, r.data_fingerprint[:8])
    cli.console.print(table)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("models")(models)
    evaluate = next((g.typer_instance for g in app.registered_groups if g.name == "evaluate"), None)
    if evaluate is None:  # older cli.py without the shared group
        evaluate = typer.Typer(help="Measure accuracy.", no_args_is_help=True)
        app.add_typer(evaluate, name="evaluate")
    evaluate.command("predictions")(evaluate_predictions)
