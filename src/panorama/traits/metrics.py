"""Customer metrics over a period and a segment, each with its formula and inputs.

    compute(store, config, start=None, end=None, segment=None) -> dict

The period is [start, end) (timestamps; the CLI turns inclusive dates into it); by default the
365 days before the start of the day after the latest event. `segment` is a SQL `WHERE`
expression over `profile_traits` (e.g. ``rfm_segment = 'Champions'``): only those profiles
count. The result is plain JSON-able data, so the REST API serves it as is. Every formula is in
docs/metrics.md.

Orders are the `orders` trait's rows (purchase events, one per order id) with the `revenue`
trait's amount; survey answers are the `metrics.nps_events` / `metrics.csat_events` with their
score property. A customer is **active** at time t when they ordered in the `L` days before t,
L = the lifecycle's `lapsed_days` (configured, else the `lapsed_quantile` of the inter-purchase
gaps before the period's end). The same SQL runs on Spark (`spark.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlglot import exp

from panorama.config import ProjectConfig, TraitConfig
from panorama.store import Store
from panorama.traits import lifecycle
from panorama.traits.definitions import (
    DIALECT,
    Trait,
    TraitError,
    compile_plan,
    compile_traits,
    parse_expression,
)
from panorama.traits.sqlgen import Pipeline, Step, ts_literal


class MetricsError(ValueError):
    """Metrics cannot be computed as asked; the message says why."""


FORMULAS = {
    "nps": "NPS = 100 × (promoters − detractors) / responses; promoters answer 9–10, detractors 0–6 "
           "(0–10 scale; every answer in the period counts)",
    "csat": "CSAT = 100 × answers of 4 or 5 / answers (1–5 scale; every answer in the period counts)",
    "churn_rate": "churn rate = 100 × customers lost in the period / customers at its start; a customer at "
                  "the start ordered in the L days before it, lost = no order in the L days before the end",
    "retention_rate": "retention rate = 100 × (customers at the end − new customers) / customers at the start; "
                      "customers at the end ordered in the L days before the end, new customers placed "
                      "their first order ever in the period",
    "historical_clv": "historical CLV = average profit per customer in the period × expected lifetime in "
                      "periods; profit = revenue × gross margin, average over the customers who ordered in "
                      "the period; expected lifetime = 1 / churn rate",
    "average_order_value": "AOV = revenue in the period / orders in the period",
    "purchase_frequency": "purchase frequency = orders in the period / customers who ordered in the period",
    "cohort_retention": "cohort retention[c][k] = 100 × customers of cohort c (first order in month c) who "
                        "ordered in month c + k / customers of cohort c",
}  # fmt: skip


def _r(v, nd: int = 2):
    return None if v is None else round(float(v), nd)


def _pct(num, den):
    return None if not den else 100.0 * float(num or 0) / float(den)


@dataclass
class Period:
    start: dt.datetime
    end: dt.datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


def segment_where(expression: str, columns: list[str]) -> str:
    """Check a segment expression (a SQL boolean over profile_traits columns); returns it as SQL."""
    try:
        tree = parse_expression(expression, "--segment")
    except TraitError as exc:
        raise MetricsError(str(exc)) from None
    known = set(columns)
    for col in tree.find_all(exp.Column):
        if col.table or col.name not in known:
            raise MetricsError(
                f"--segment: unknown column {col.sql()!r}; profile_traits has {', '.join(sorted(known))}"
            )
    return tree.sql(dialect=DIALECT)


class MetricsQuery:
    """The SQL of the metrics, engine-independent."""

    def __init__(self, config: ProjectConfig, period: Period, prefix: str = "_mt_"):
        plan = compile_plan(config)
        by_name = {t.name: t for t in plan.traits}
        if "orders" not in by_name or "revenue" not in by_name:
            raise MetricsError("metrics need the `orders` and `revenue` traits (they are dropped in panorama.yaml)")
        m = config.metrics
        traits = [
            by_name["orders"],
            by_name["revenue"],
            Trait("m_nps", TraitConfig(event=list(m.nps_events), agg="last", property=m.nps_property), False, ""),
            Trait("m_csat", TraitConfig(event=list(m.csat_events), agg="last", property=m.csat_property), False, ""),
        ]
        self.config = config
        self.plan = compile_traits(traits)
        self.period = period
        self.pipeline = Pipeline(self.plan, period.end, prefix)
        self.c = {c.trait.name: c for c in self.plan.aggregations}
        if self.c["orders"].relation != self.c["revenue"].relation:
            raise MetricsError("the `orders` and `revenue` traits must read the same events (purchase events, "
                               "unique by order id)")  # fmt: skip

    def rel(self, name: str) -> str:
        return self.pipeline.rel(name)

    def steps(self, pe: str) -> list[Step]:
        p = self.pipeline
        steps = [p.events_step(pe), *p.dedup_steps()]
        o, r = self.c["orders"], self.c["revenue"]
        steps.append(Step(self.rel("orders"), f"""
            SELECT profile_id, ts, CAST(({r.value}) AS DOUBLE) AS amount
            FROM {p.rel(o.relation)} WHERE ({o.cond}) AND ts < {ts_literal(self.period.end)}
        """))  # fmt: skip
        parts = []
        for kind in ("nps", "csat"):
            c = self.c[f"m_{kind}"]
            parts.append(
                f"SELECT profile_id, ts, '{kind}' AS kind, TRY_CAST(({c.value}) AS DOUBLE) AS score "
                f"FROM {p.rel('events')} WHERE ({c.cond})"
            )
        steps.append(Step(self.rel("surveys"), " UNION ALL ".join(parts)))
        return steps

    def gaps_sql(self) -> str:
        return lifecycle.gaps_sql(self.rel("orders"), self.period.end, self.config.lifecycle)

    def queries(self, lapsed_days: int) -> dict[str, str]:
        S, E = ts_literal(self.period.start), ts_literal(self.period.end)
        L = int(lapsed_days)
        o, s = self.rel("orders"), self.rel("surveys")
        in_period = f"ts >= {S} AND ts < {E}"
        customers = f"""
            WITH first_orders AS (SELECT profile_id, min(ts) AS first_ts FROM {o} GROUP BY profile_id),
            at_start AS (
                SELECT DISTINCT profile_id FROM {o} WHERE ts >= {S} - INTERVAL {L} DAY AND ts < {S}
            ),
            at_end AS (
                SELECT DISTINCT profile_id FROM {o} WHERE ts >= {E} - INTERVAL {L} DAY AND ts < {E}
            ),
            lost AS (
                SELECT a.profile_id FROM at_start a LEFT JOIN at_end b ON b.profile_id = a.profile_id
                WHERE b.profile_id IS NULL
            ),
            period AS (
                SELECT count(*) AS orders, sum(amount) AS revenue, count(DISTINCT profile_id) AS buyers
                FROM {o} WHERE {in_period}
            )
            SELECT (SELECT count(*) FROM at_start) AS customers_start,
                   (SELECT count(*) FROM at_end) AS customers_end,
                   (SELECT count(*) FROM first_orders WHERE first_ts >= {S} AND first_ts < {E}) AS new_customers,
                   (SELECT count(*) FROM lost) AS lost,
                   period.orders, period.revenue, period.buyers
            FROM period
        """
        surveys = f"""
            SELECT
                sum(CASE WHEN kind = 'nps' AND score >= 9 AND score <= 10 THEN 1 ELSE 0 END) AS promoters,
                sum(CASE WHEN kind = 'nps' AND score >= 7 AND score < 9 THEN 1 ELSE 0 END) AS passives,
                sum(CASE WHEN kind = 'nps' AND score >= 0 AND score < 7 THEN 1 ELSE 0 END) AS detractors,
                sum(CASE WHEN kind = 'csat' AND score >= 4 AND score <= 5 THEN 1 ELSE 0 END) AS satisfied,
                sum(CASE WHEN kind = 'csat' AND score >= 1 AND score <= 5 THEN 1 ELSE 0 END) AS csat_answers
            FROM {s} WHERE {in_period}
        """
        cohorts = f"""
            WITH f AS (SELECT profile_id, date_trunc('month', min(ts)) AS cohort FROM {o} GROUP BY profile_id),
            a AS (SELECT DISTINCT profile_id, date_trunc('month', ts) AS month FROM {o})
            SELECT strftime(f.cohort, '%Y-%m') AS cohort,
                   date_diff('month', f.cohort, a.month) AS k,
                   count(*) AS customers
            FROM f JOIN a ON a.profile_id = f.profile_id
            WHERE f.cohort >= date_trunc('month', {S}) AND f.cohort < {E}
            GROUP BY f.cohort, date_diff('month', f.cohort, a.month)
            ORDER BY 1, 2
        """
        return {"customers": customers, "surveys": surveys, "cohorts": cohorts}

    def assemble(self, rows: dict[str, list[dict]], lapsed: dict, segment: str | None,
                 profiles: int | None) -> dict:  # fmt: skip
        c = rows["customers"][0]
        sv = rows["surveys"][0]
        margin = self.config.metrics.gross_margin
        start_n, end_n, new_n, lost = (int(c[k] or 0) for k in ("customers_start", "customers_end",
                                                                 "new_customers", "lost"))  # fmt: skip
        orders, revenue, buyers = int(c["orders"] or 0), float(c["revenue"] or 0.0), int(c["buyers"] or 0)
        prom, pas, det = (int(sv[k] or 0) for k in ("promoters", "passives", "detractors"))
        responses = prom + pas + det
        sat, answers = int(sv["satisfied"] or 0), int(sv["csat_answers"] or 0)
        churn = _pct(lost, start_n)
        profit_per_customer = revenue * margin / buyers if buyers else None
        lifetime = 100.0 / churn if churn else None
        clv = profit_per_customer * lifetime if profit_per_customer is not None and lifetime else None
        metrics = {
            "nps": {"value": _r(None if not responses else 100.0 * (prom - det) / responses, 1), "unit": "score",
                    "inputs": {"promoters": prom, "passives": pas, "detractors": det, "responses": responses}},
            "csat": {"value": _r(_pct(sat, answers), 1), "unit": "%",
                     "inputs": {"answers_4_or_5": sat, "answers": answers}},
            "churn_rate": {"value": _r(churn, 1), "unit": "%",
                           "inputs": {"customers_lost": lost, "customers_at_start": start_n}},
            "retention_rate": {"value": _r(_pct(end_n - new_n, start_n), 1), "unit": "%",
                               "inputs": {"customers_at_end": end_n, "new_customers": new_n,
                                          "customers_at_start": start_n}},
            "historical_clv": {"value": _r(clv), "unit": "currency",
                               "inputs": {"revenue": _r(revenue), "gross_margin": margin, "customers_ordering": buyers,
                                          "average_profit_per_customer": _r(profit_per_customer),
                                          "churn_rate_pct": _r(churn, 1),
                                          "expected_lifetime_periods": _r(lifetime, 3)}},
            "average_order_value": {"value": _r(revenue / orders if orders else None), "unit": "currency",
                                    "inputs": {"revenue": _r(revenue), "orders": orders}},
            "purchase_frequency": {"value": _r(orders / buyers if buyers else None, 3), "unit": "orders per customer",
                                   "inputs": {"orders": orders, "customers_ordering": buyers}},
        }  # fmt: skip
        for name, m in metrics.items():
            m["formula"] = FORMULAS[name]
        return {
            "period": {"start": self.period.start.isoformat(), "end": self.period.end.isoformat(),
                       "days": _r(self.period.days, 3)},
            "segment": segment,
            "profiles": profiles,
            "parameters": {"active_window_days": int(lapsed["lapsed_days"]),
                           "active_window_basis": lapsed["basis"]["lapsed_days"], "gross_margin": margin},
            "metrics": metrics,
            "cohorts": _cohorts(rows["cohorts"]),
        }  # fmt: skip


def _cohorts(rows: list[dict]) -> dict:
    by: dict[str, dict[int, int]] = {}
    for r in rows:
        by.setdefault(r["cohort"], {})[int(r["k"])] = int(r["customers"])
    width = max((max(v) for v in by.values()), default=-1) + 1
    out = []
    for cohort in sorted(by):
        counts = by[cohort]
        size = counts.get(0, 0)
        last = max(counts)
        out.append({"cohort": cohort, "customers": size,
                    "retention": [_r(_pct(counts.get(k, 0), size), 1) for k in range(last + 1)]})  # fmt: skip
    return {"formula": FORMULAS["cohort_retention"], "months": list(range(width)), "rows": out}


def default_period(store: Store, start: dt.datetime | None, end: dt.datetime | None) -> Period:
    from panorama.traits.batch import TraitsError, default_as_of

    if end is None:
        try:
            end = default_as_of(store)
        except TraitsError as exc:
            raise MetricsError(str(exc)) from None
    start = start or end - dt.timedelta(days=365)
    if start >= end:
        raise MetricsError(f"the period is empty: start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}")
    return Period(start, end)


def run(engine, query: MetricsQuery, pe: str, segment_sql: str | None, traits_rel: str | None,
        segment: str | None) -> dict:  # fmt: skip
    """Run the metrics on an engine: `pe` the profile events, `traits_rel` the profile traits."""
    profiles = None
    if segment_sql is not None:
        members = f"SELECT profile_id FROM {traits_rel} WHERE {segment_sql}"
        pe = f"(SELECT * FROM {pe} WHERE profile_id IN ({members}))"
        profiles = int(engine.rows(f"SELECT count(*) AS n FROM ({members})")[0]["n"])
    for step in query.steps(pe):
        engine.materialize(step.name, step.sql)
    cfg = query.config.lifecycle
    gaps = None if cfg.lapsed_days else engine.rows(query.gaps_sql())[0]
    lapsed = lifecycle.thresholds(cfg, gaps)
    rows = {name: engine.rows(sql) for name, sql in query.queries(lapsed["lapsed_days"]).items()}
    return query.assemble(rows, lapsed, segment, profiles)


def compute(
    store: Store,
    config: ProjectConfig,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    segment: str | None = None,
    *,
    inputs=None,
) -> dict:
    """The metrics for [start, end) and the profiles matching `segment` (see the module doc)."""
    from panorama.traits.batch import Inputs
    from panorama.traits.engines import DuckDBEngine

    period = default_period(store, start, end)
    segment_sql = None
    if segment:
        if not store.table_exists("profile_traits"):
            raise MetricsError("--segment needs profile traits: run `panorama traits compute` first")
        columns = [r[0] for r in store.execute("DESCRIBE profile_traits").fetchall()]
        segment_sql = segment_where(segment, columns)
    inputs = inputs or Inputs.from_store(store)
    query = MetricsQuery(config, period)
    engine = DuckDBEngine(store.cursor())
    try:
        return run(engine, query, f"({inputs.events_sql})", segment_sql, "profile_traits", segment)
    finally:
        engine.drop(engine.created)
