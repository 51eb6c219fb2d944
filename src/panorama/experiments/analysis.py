"""A/B test analysis over the event log (docs/experiments.md).

Exposure: a profile's first assignment event (`Experiment Viewed` by default) whose
`experiment_id` property names the experiment; its `variant` property is the profile's variant.
Profiles exposed to more than one variant are excluded (and counted). The metric is computed per
exposed profile from its events in the window after its exposure:

* conversion: 1 if it has a metric event (default `Order Completed`) in the window, else 0;
* revenue: revenue of its metric events in the window (orders counted once by `order_id`,
  so a web `Order Completed` and the shop's copy of the same order are one order);
* retention: 1 if it has a metric event more than a day after exposure and within the window.

Every function returns plain dicts (the CLI, REST API and web UI call the same ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from panorama.config import ExperimentConfig, ProjectConfig
from panorama.experiments import stats
from panorama.store import Store


class ExperimentError(Exception):
    """An experiment that cannot be analysed; the message says why."""


def _events_sql(store: Store, events_sql: str | None) -> str:
    if events_sql is not None:
        return events_sql
    from panorama.profiles import profile_events_sql

    return profile_events_sql(store)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _path(prop: str) -> str:
    return _lit("$." + prop)


def list_experiments(store: Store, config: ProjectConfig, events_sql: str | None = None) -> list[dict]:
    """Declared experiments and those seen in the log (assignment events), with exposure counts."""
    rows: dict[str, dict] = {}
    for name, exp in config.experiments.items():
        rows[exp.experiment_id or name] = {"name": name, "experiment_id": exp.experiment_id or name,
                                           "declared": True, "metric": exp.metric,
                                           "description": exp.description}
    events = {(e.assignment_event, e.id_property, e.variant_property) for e in config.experiments.values()}
    events.add(("Experiment Viewed", "experiment_id", "variant"))
    src = _events_sql(store, events_sql)
    for event, id_prop, var_prop in sorted(events):
        result = store.execute(f"""
            SELECT json_extract_string(properties, {_path(id_prop)}) AS id,
                   min(timestamp), max(timestamp), count(DISTINCT profile_id),
                   list(DISTINCT json_extract_string(properties, {_path(var_prop)}) ORDER BY 1)
            FROM ({src}) WHERE event = ? GROUP BY 1 HAVING id IS NOT NULL ORDER BY 2""", [event]).fetchall()
        for exp_id, first, last, profiles, variants in result:
            row = rows.setdefault(exp_id, {"name": exp_id, "experiment_id": exp_id, "declared": False,
                                           "metric": "conversion", "description": None})
            row.update(first_exposure=first, last_exposure=last, exposed_profiles=int(profiles),
                       variants=sorted(v for v in variants if v is not None))
    for row in rows.values():
        row.setdefault("exposed_profiles", 0)
    return sorted(rows.values(), key=lambda r: (r.get("first_exposure") or datetime.max, r["name"]))


def experiment_config(config: ProjectConfig, name: str) -> tuple[str, ExperimentConfig]:
    """The declared experiment `name` (by name or experiment_id), else defaults for an experiment
    found only in the log."""
    if name in config.experiments:
        exp = config.experiments[name]
        return exp.experiment_id or name, exp
    for _key, exp in config.experiments.items():
        if exp.experiment_id == name:
            return name, exp
    return name, ExperimentConfig()


@dataclass
class Exposures:
    """Per exposed profile: variant, exposure time, metric value."""

    variant: np.ndarray
    exposed_at: np.ndarray  # datetime64
    value: np.ndarray
    mixed: int  # profiles exposed to more than one variant (excluded)


def exposures(store: Store, exp_id: str, exp: ExperimentConfig, events_sql: str | None = None) -> Exposures:
    src = _events_sql(store, events_sql)
    metric_events = [exp.metric_event] if isinstance(exp.metric_event, str) else list(exp.metric_event)
    in_list = ", ".join(_lit(e) for e in metric_events)
    period = ""
    if exp.start:
        period += f" AND timestamp >= TIMESTAMP {_lit(exp.start)}"
    if exp.end:
        period += f" AND timestamp < TIMESTAMP {_lit(exp.end)}"
    window_us = int(exp.window * 1_000_000)
    lower = "x.exposed_at + INTERVAL 1 DAY" if exp.metric == "retention" else "x.exposed_at"
    order_key = "coalesce(e.order_id, json_extract_string(e.properties, '$.order_id'), e.message_id)"
    value = {"conversion": "CASE WHEN m.orders > 0 THEN 1.0 ELSE 0.0 END",
             "retention": "CASE WHEN m.orders > 0 THEN 1.0 ELSE 0.0 END",
             "revenue": "coalesce(m.revenue, 0.0)"}[exp.metric]  # fmt: skip
    sql = f"""
        WITH pe AS ({src}),
        raw AS (
            SELECT profile_id, timestamp, json_extract_string(properties, {_path(exp.variant_property)}) AS variant
            FROM pe
            WHERE event = {_lit(exp.assignment_event)}
              AND json_extract_string(properties, {_path(exp.id_property)}) = {_lit(exp_id)} {period}
        ),
        x AS (
            SELECT profile_id, min(timestamp) AS exposed_at, arg_min(variant, timestamp) AS variant,
                   count(DISTINCT variant) AS n_variants
            FROM raw WHERE variant IS NOT NULL GROUP BY profile_id
        ),
        hits AS (
            SELECT x.profile_id, {order_key} AS okey, max(e.revenue) AS revenue
            FROM x JOIN pe e ON e.profile_id = x.profile_id
            WHERE e.event IN ({in_list}) AND e.timestamp >= {lower}
              AND e.timestamp <= x.exposed_at + to_microseconds({window_us})
            GROUP BY ALL
        ),
        m AS (SELECT profile_id, count(*) AS orders, sum(revenue) AS revenue FROM hits GROUP BY profile_id)
        SELECT x.variant, x.exposed_at, {value} AS value, x.n_variants
        FROM x LEFT JOIN m ON m.profile_id = x.profile_id
        ORDER BY x.exposed_at
    """
    table = store.execute(sql).to_arrow_table()
    n_variants = table.column("n_variants").to_numpy()
    keep = n_variants == 1
    return Exposures(
        variant=np.asarray(table.column("variant").to_pylist(), dtype=object)[keep],
        exposed_at=table.column("exposed_at").to_numpy()[keep],
        value=table.column("value").to_numpy().astype(float)[keep],
        mixed=int((~keep).sum()),
    )


def _f(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def _pair(ci) -> list[float | None]:
    return [_f(ci[0]), _f(ci[1])]


def _variants_order(exp: ExperimentConfig, seen: list[str]) -> list[str]:
    if exp.variants:
        return list(exp.variants) + [v for v in seen if v not in exp.variants]
    rest = sorted(v for v in seen if v != "control")
    return (["control"] if "control" in seen else []) + rest


def _horizon(exp: ExperimentConfig, counts: dict[str, int], as_of: datetime) -> dict:
    reasons = []
    reached = True
    declared = exp.sample_size is not None or exp.end is not None
    if exp.sample_size is not None:
        smallest = min(counts.values()) if counts else 0
        if smallest < exp.sample_size:
            reached = False
            reasons.append(f"{smallest:,} of the planned {exp.sample_size:,} exposures per variant")
    if exp.end is not None and as_of < datetime.fromisoformat(exp.end):
        reached = False
        reasons.append(f"the planned end is {exp.end}")
    return {"declared": declared, "reached": reached, "waiting_for": reasons,
            "sample_size": exp.sample_size, "end": exp.end}


def analyze(store: Store, config: ProjectConfig, name: str, events_sql: str | None = None,
            as_of: datetime | None = None) -> dict:
    """The analysis of experiment `name`: per-variant counts and rates, each variant against the
    control (lifts with intervals, p-value, P(beat control)), the SRM check and the verdict.

    Fixed horizon (the default): before the declared sample size or end is reached the lifts and
    p-values are withheld (`refused`), because looking early and stopping on significance
    inflates false positives. `sequential: true` experiments report mSPRT always-valid p-values
    and intervals at any time instead."""
    exp_id, exp = experiment_config(config, name)
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
    ex = exposures(store, exp_id, exp, events_sql)
    if len(ex.variant) == 0:
        raise ExperimentError(f"experiment {exp_id!r}: no profile has a {exp.assignment_event!r} event with "
                              f"{exp.id_property} = {exp_id!r} and a {exp.variant_property!r}; "
                              "see `panorama experiments list`")
    order = _variants_order(exp, sorted(set(ex.variant.tolist())))
    control = order[0]
    per_variant = []
    counts = {}
    for v in order:
        vals = ex.value[ex.variant == v]
        n = len(vals)
        counts[v] = n
        row = {"variant": v, "control": v == control, "exposed": n,
               "mean": _f(vals.mean()) if n else None,
               "sd": _f(vals.std(ddof=1)) if n > 1 else None}
        if exp.metric in ("conversion", "retention"):
            row["converted"] = int(vals.sum())
            row["rate"] = row["mean"]
        else:
            row["revenue"] = _f(vals.sum())
            row["buyers"] = int((vals > 0).sum())
        per_variant.append(row)
    weights = exp.weights if exp.weights and len(exp.weights) == len(order) else None
    srm = stats.srm([counts[v] for v in order], weights)
    horizon = _horizon(exp, counts, as_of)
    result = {
        "experiment": exp_id, "name": name, "metric": exp.metric,
        "metric_event": exp.metric_event, "window_seconds": exp.window, "alpha": exp.alpha,
        "design": "sequential (mSPRT, always valid)" if exp.sequential else "fixed horizon",
        "control": control, "variants": per_variant, "excluded_mixed_exposure": ex.mixed,
        "first_exposure": ex.exposed_at.min().astype("datetime64[s]").item(),
        "last_exposure": ex.exposed_at.max().astype("datetime64[s]").item(),
        "srm": srm, "horizon": horizon, "comparisons": [], "refused": None, "notes": [],
    }  # fmt: skip
    if not horizon["declared"] and not exp.sequential:
        result["notes"].append("no horizon (sample_size or end) declared: these results are valid only if "
                               "the test's length was fixed in advance and this is its final look")
    if not exp.sequential and not horizon["reached"]:
        result["refused"] = ("fixed-horizon test still running (" + "; ".join(horizon["waiting_for"])
                             + "): lifts and p-values are withheld until then, because stopping early on "
                             "significance inflates false positives. Declare `sequential: true` to "
                             "monitor with always-valid (mSPRT) p-values instead.")
        result["verdict"] = "running"
        return result
    c = ex.value[ex.variant == control]
    for v in order[1:]:
        t = ex.value[ex.variant == v]
        result["comparisons"].append(_compare(exp, control, c, v, t, ex))
    result["verdict"] = _verdict(result)
    return result


def _compare(exp: ExperimentConfig, control: str, c: np.ndarray, name: str, t: np.ndarray,
             ex: Exposures) -> dict:
    n_c, n_t = len(c), len(t)
    out: dict = {"variant": name, "against": control}
    if n_c < 2 or n_t < 2:
        out["error"] = "fewer than two exposures in a variant"
        return out
    if exp.metric in ("conversion", "retention"):
        x_c, x_t = int(c.sum()), int(t.sum())
        r = stats.proportions(x_c, n_c, x_t, n_t, exp.alpha)
        out.update(test="two-proportion z-test", statistic=_f(r["z"]),
                   prob_beat_control=stats.prob_beat_control_beta(x_c, n_c, x_t, n_t),
                   prob_method="Beta(1+x, 1+n-x) posteriors, 200k draws")
    else:
        r = stats.welch(c.mean(), c.var(ddof=1), n_c, t.mean(), t.var(ddof=1), n_t, exp.alpha)
        se = np.sqrt(c.var(ddof=1) / n_c + t.var(ddof=1) / n_t)
        out.update(test="Welch t-test", statistic=_f(r["t"]), df=_f(r["df"]),
                   prob_beat_control=_f(stats.prob_beat_control_normal(r["abs_lift"], se)),
                   prob_method="normal approximation, flat prior")
    out.update(abs_lift=_f(r["abs_lift"]), abs_ci=_pair(r["abs_ci"]), rel_lift=_f(r["rel_lift"]),
               rel_ci=_pair(r["rel_ci"]), p_value=_f(r["p_value"]))
    out["significant"] = bool(out["p_value"] is not None and out["p_value"] < exp.alpha)
    if exp.sequential:
        out["sequential"] = _sequential(exp, c, t, ex, control, name)
        out["significant"] = out["sequential"]["p_value"] < exp.alpha
    return out


def _sequential(exp: ExperimentConfig, c: np.ndarray, t: np.ndarray, ex: Exposures, control: str,
                name: str) -> dict:
    """mSPRT evaluated at every day's look (cumulative exposures by day); the always-valid
    p-value is the running minimum of 1/Λ."""
    days = ex.exposed_at.astype("datetime64[D]")
    is_c, is_t = ex.variant == control, ex.variant == name
    looks = np.unique(days)
    diffs, variances = [], []
    for day in looks:
        upto = days <= day
        cv, tv = ex.value[upto & is_c], ex.value[upto & is_t]
        if len(cv) < 2 or len(tv) < 2:
            continue
        diffs.append(tv.mean() - cv.mean())
        variances.append(max(cv.var(ddof=1), 1e-12) / len(cv) + max(tv.var(ddof=1), 1e-12) / len(tv))
    base = c.mean() if c.mean() > 0 else 1.0
    tau2 = (base * (exp.mde or 0.1)) ** 2
    r = stats.msprt(np.array(diffs), np.array(variances), tau2, exp.alpha)
    p = np.minimum.accumulate(r["p_value"])
    lo, hi = np.maximum.accumulate(r["ci"][0]), np.minimum.accumulate(r["ci"][1])
    return {"p_value": float(p[-1]), "ci": [_f(lo[-1]), _f(hi[-1])], "looks": len(diffs),
            "tau": float(np.sqrt(tau2))}


def _verdict(result: dict) -> str:
    if result["srm"]["mismatch"]:
        return "invalid: sample ratio mismatch (check assignment and logging before reading the results)"
    wins = [c["variant"] for c in result["comparisons"] if c.get("significant") and (c["abs_lift"] or 0) > 0]
    losses = [c["variant"] for c in result["comparisons"] if c.get("significant") and (c["abs_lift"] or 0) < 0]
    if wins:
        return f"{', '.join(wins)} beats {result['control']}"
    if losses:
        return f"{', '.join(losses)} is worse than {result['control']}"
    return "no significant difference"


# More exposures per variant than any test could gather (and than a JSON integer holds).
MAX_SAMPLE = 10**15


def plan(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, metric: str = "conversion",
         sd: float | None = None, daily_exposures: float | None = None, variants: int = 2) -> dict:
    """Sample size per variant (and days at a traffic level) for a fixed-horizon test."""
    if metric == "revenue" and sd is None:
        raise ExperimentError("revenue: give the standard deviation of revenue per user (--sd)")
    try:
        if metric == "revenue":
            n = stats.sample_size_means(baseline, sd, mde, alpha, power)
        else:
            n = stats.sample_size_proportions(baseline, mde, alpha, power)
    except OverflowError:
        n = None
    if n is None or n > MAX_SAMPLE:
        size = f"{float(n):.3g}" if n is not None else f"more than {float(MAX_SAMPLE):.0e}"
        raise ExperimentError(f"detecting {mde:+.3g} on {baseline:g} would take {size} exposures per "
                              f"variant - beyond any test; look for a larger effect or a less noisy metric")  # fmt: skip
    out = {"metric": metric, "baseline": baseline, "mde": mde, "alpha": alpha, "power": power,
           "per_variant": n, "total": n * variants}
    if daily_exposures:
        out["days"] = float(np.ceil(n * variants / daily_exposures))
    return out


def observed_power(store: Store, config: ProjectConfig, name: str, mde: float,
                   events_sql: str | None = None) -> dict:
    """The power the exposures so far give to detect a relative lift `mde` on the observed control
    rate, and the sample size it needs (for `panorama experiments power NAME`)."""
    exp_id, exp = experiment_config(config, name)
    ex = exposures(store, exp_id, exp, events_sql)
    if len(ex.variant) == 0:
        raise ExperimentError(f"experiment {exp_id!r}: no exposures")
    order = _variants_order(exp, sorted(set(ex.variant.tolist())))
    c = ex.value[ex.variant == order[0]]
    n = min(int((ex.variant == v).sum()) for v in order)
    if exp.metric == "revenue":
        sd = float(c.std(ddof=1))
        pw = stats.power_means(float(c.mean()), sd, mde, n, exp.alpha)
        need = stats.sample_size_means(float(c.mean()), sd, mde, exp.alpha, exp.power)
    else:
        pw = stats.power_proportions(float(c.mean()), mde, n, exp.alpha)
        need = stats.sample_size_proportions(float(c.mean()), mde, exp.alpha, exp.power)
    return {"experiment": exp_id, "baseline": float(c.mean()), "mde": mde, "per_variant_now": n,
            "power_now": pw, "per_variant_needed": need, "power_target": exp.power}
