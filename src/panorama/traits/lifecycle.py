"""Lifecycle stage per profile: prospect, new, active, at_risk, lapsed, reactivated.

With `d_first` / `d_last` the whole days since the first / latest order at the as-of time and
`gap` the days between the calendar days of the two latest orders:

    no order                                   -> prospect
    d_first <= new_days                        -> new
    d_last <= active_days and gap > lapsed_days -> reactivated   (came back after lapsing)
    d_last <= active_days                      -> active
    d_last <= lapsed_days                      -> at_risk
    otherwise                                  -> lapsed

Thresholds come from `lifecycle:` in panorama.yaml; unset ones are derived from the data's
inter-purchase times: the gaps in days between consecutive purchase days of each customer
(orders before the as-of time), pooled over all customers. `active_days` is their
`active_quantile` (default 0.75: three in four repeat purchases come within it), `lapsed_days`
their `lapsed_quantile` (0.9), `new_days` = `active_days`. Quantiles are nearest-rank
(the ceil(q n)-th smallest gap). With fewer than `min_gaps` gaps the fallbacks are 90 / 365 days.
"""

from __future__ import annotations

from panorama.config import LifecycleConfig
from panorama.traits.sqlgen import q, ts_literal

STAGES = ("prospect", "new", "active", "reactivated", "at_risk", "lapsed")
REQUIRED = ("orders", "days_since_first_order", "days_since_last_order", "last_order_at", "previous_order_at")
FALLBACK_ACTIVE = 90
FALLBACK_LAPSED = 365


def gaps_sql(purchases: str, as_of, config: LifecycleConfig) -> str:
    """One row: n (gaps), active (quantile), lapsed (quantile), median; nearest-rank quantiles
    from the histogram of the gaps (whole days)."""

    def quantile(qv: str) -> str:
        return f"min(CASE WHEN cum >= CAST(ceil({qv} * total) AS BIGINT) THEN gap END)"

    return f"""
        WITH d AS (
            SELECT DISTINCT profile_id, CAST(ts AS DATE) AS day FROM {purchases} WHERE ts < {ts_literal(as_of)}
        ),
        g AS (
            SELECT date_diff('day', lag(day) OVER (PARTITION BY profile_id ORDER BY day), day) AS gap FROM d
        ),
        h AS (SELECT gap, count(*) AS n FROM g WHERE gap IS NOT NULL GROUP BY gap),
        c AS (
            SELECT gap, sum(n) OVER (ORDER BY gap ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
                   sum(n) OVER () AS total
            FROM h
        )
        SELECT max(total) AS n, {quantile(repr(config.active_quantile))} AS active,
               {quantile(repr(config.lapsed_quantile))} AS lapsed, {quantile("0.5")} AS median
        FROM c
    """


def thresholds(config: LifecycleConfig, gaps: dict | None) -> dict:
    """The thresholds in force and where each comes from."""
    n = int((gaps or {}).get("n") or 0)
    enough = n >= config.min_gaps
    derived_active = int(gaps["active"]) if enough and gaps.get("active") is not None else None
    derived_lapsed = int(gaps["lapsed"]) if enough and gaps.get("lapsed") is not None else None
    out = {"gaps": n, "median_gap_days": (gaps or {}).get("median") if enough else None}
    active = config.active_days or derived_active or FALLBACK_ACTIVE
    lapsed = config.lapsed_days or derived_lapsed or FALLBACK_LAPSED
    lapsed = max(lapsed, active + 1)  # keep the stages ordered on odd data
    out["active_days"] = int(active)
    out["lapsed_days"] = int(lapsed)
    out["new_days"] = int(config.new_days or active)
    basis = {}
    for key, set_, derived in (("active_days", config.active_days, derived_active),
                               ("lapsed_days", config.lapsed_days, derived_lapsed),
                               ("new_days", config.new_days, derived_active)):  # fmt: skip
        basis[key] = "config" if set_ else ("derived" if derived else "fallback")
    out["basis"] = basis
    return out


def stage_sql(th: dict) -> str:
    gap = f"date_diff('day', CAST({q('previous_order_at')} AS DATE), CAST({q('last_order_at')} AS DATE))"
    d_first, d_last = q("days_since_first_order"), q("days_since_last_order")
    return f"""CASE
        WHEN coalesce({q('orders')}, 0) = 0 THEN 'prospect'
        WHEN {d_first} <= {th['new_days']} THEN 'new'
        WHEN {d_last} <= {th['active_days']} AND {q('previous_order_at')} IS NOT NULL
             AND {gap} > {th['lapsed_days']} THEN 'reactivated'
        WHEN {d_last} <= {th['active_days']} THEN 'active'
        WHEN {d_last} <= {th['lapsed_days']} THEN 'at_risk'
        ELSE 'lapsed' END"""
